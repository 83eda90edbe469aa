#!/usr/bin/env bash
# Starts the real services the tests use, each on loopback with its data in
# DIR, and writes DIR/env with the variables tests read:
#   JOBRUN_TEST_MINIO      http://127.0.0.1:PORT (user/secret in *_ACCESS_KEY/*_SECRET_KEY)
#   JOBRUN_TEST_REGISTRY   127.0.0.1:PORT (Debian's docker-registry, plain HTTP)
#   JOBRUN_TEST_POSTGRES   a postgres:// URL
# DIR may be anywhere: PostgreSQL runs as the postgres user, so when a
# parent of DIR is closed to it (a mktemp -d dir is 0700) its data goes in
# a directory of its own under /tmp instead, named in DIR/pg.dir. If a
# service fails to start, the ones started before it are stopped.
# usage: services.sh start DIR | stop DIR
set -euo pipefail
cmd=${1:?usage: services.sh start|stop DIR}
dir=${2:?usage: services.sh start|stop DIR}
export PATH=$(go env GOPATH)/bin:$PATH

free_port() { # a port nothing listens on now
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		(exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo $p; return; }
	done
}
wait_tcp() { # wait_tcp PORT NAME
	for _ in $(seq 1 200); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "services: $2 did not start on 127.0.0.1:$1; its log:" >&2
	cat "$dir/$2.log" >&2 || true
	return 1
}

# pg_dir: where PostgreSQL keeps its data, socket and logs: DIR/pg if the
# postgres user can reach it, else a fresh postgres-owned dir under /tmp.
pg_dir() {
	local p= part own
	local IFS=/
	for part in ${dir#/}; do
		p=$p/$part
		if ! runuser -u postgres -- test -x "$p" 2>/dev/null; then
			own=$(mktemp -d /tmp/jobrun-services-pg.XXXXXX)
			echo "services: the postgres user cannot enter $p ($(stat -c '%A %U' "$p")); PostgreSQL's data goes in $own" >&2
			echo "$own"
			return
		fi
	done
	echo "$dir/pg"
}

start() {
	local t
	for t in minio docker-registry runuser; do
		command -v "$t" >/dev/null || {
			echo "services: needs $t on PATH (scripts/deps.sh installs it)" >&2
			exit 1
		}
	done
	ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || {
		echo "services: needs PostgreSQL's server (scripts/deps.sh installs it)" >&2
		exit 1
	}
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd -P)
	: >"$dir/env"
	# Whatever fails from here on, stop what was started.
	trap 'rc=$?; if [ $rc != 0 ]; then echo "services: start failed; stopping what it started" >&2; stop; fi' EXIT

	local mport=$(free_port) key=jobrun-test secret=jobrun-test-secret-$RANDOM$RANDOM
	mkdir -p "$dir/minio"
	MINIO_ROOT_USER=$key MINIO_ROOT_PASSWORD=$secret MINIO_BROWSER=off MINIO_UPDATE=off \
		minio server --quiet --address "127.0.0.1:$mport" "$dir/minio" >"$dir/minio.log" 2>&1 &
	echo $! >"$dir/minio.pid"
	wait_tcp "$mport" minio
	cat >>"$dir/env" <<-EOT
		export JOBRUN_TEST_MINIO=http://127.0.0.1:$mport
		export JOBRUN_TEST_MINIO_ACCESS_KEY=$key
		export JOBRUN_TEST_MINIO_SECRET_KEY=$secret
	EOT

	local rport=$(free_port)
	mkdir -p "$dir/registry"
	cat >"$dir/registry.yml" <<-EOT
		version: 0.1
		storage:
		  filesystem:
		    rootdirectory: $dir/registry
		  delete:
		    enabled: true
		http:
		  addr: 127.0.0.1:$rport
	EOT
	docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
	echo $! >"$dir/registry.pid"
	wait_tcp "$rport" registry
	echo "export JOBRUN_TEST_REGISTRY=127.0.0.1:$rport" >>"$dir/env"

	local pport=$(free_port) pgbin
	pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
	chmod 755 "$dir"
	pg=$(pg_dir)
	echo "$pg" >"$dir/pg.dir"
	mkdir -p "$pg"
	chown postgres "$pg"
	runuser -u postgres -- "$pgbin/initdb" -D "$pg/data" -U postgres --auth=trust >"$dir/pg.log" 2>&1 || {
		echo "services: initdb -D $pg/data failed; its log:" >&2
		cat "$dir/pg.log" >&2
		return 1
	}
	echo "$pgbin" >"$dir/pg.bin"
	runuser -u postgres -- "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/server.log" -w \
		-o "-h 127.0.0.1 -p $pport -k $pg -c fsync=off" start >>"$dir/pg.log" 2>&1 || {
		echo "services: PostgreSQL did not start; its logs:" >&2
		cat "$dir/pg.log" "$pg/server.log" >&2 || true
		return 1
	}
	runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$pport" -U postgres jobrun >>"$dir/pg.log" 2>&1
	echo "export JOBRUN_TEST_POSTGRES=postgres://postgres@127.0.0.1:$pport/jobrun?sslmode=disable" >>"$dir/env"
}

stop() {
	local pid pg
	for s in minio registry; do
		if [ -f "$dir/$s.pid" ]; then
			pid=$(cat "$dir/$s.pid")
			kill "$pid" 2>/dev/null || true
			# Wait (up to 5 s) so that nothing holds DIR when stop returns.
			for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
			kill -9 "$pid" 2>/dev/null || true
			rm -f "$dir/$s.pid"
		fi
	done
	pg=$dir/pg
	[ -f "$dir/pg.dir" ] && pg=$(cat "$dir/pg.dir")
	if [ -f "$dir/pg.bin" ]; then
		runuser -u postgres -- "$(cat "$dir/pg.bin")/pg_ctl" -D "$pg/data" -m immediate -w stop >/dev/null 2>&1 || true
		rm -f "$dir/pg.bin"
	fi
	# A data dir of its own under /tmp goes with the services.
	case $pg in /tmp/jobrun-services-pg.*) rm -rf "$pg" ;; esac
	rm -f "$dir/pg.dir"
}

"$cmd"
