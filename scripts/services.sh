#!/usr/bin/env bash
# Starts the real services the tests use, each on loopback with its data in
# DIR, and writes DIR/env with the variables tests read:
#   JOBRUN_TEST_MINIO      http://127.0.0.1:PORT (user/secret in *_ACCESS_KEY/*_SECRET_KEY)
#   JOBRUN_TEST_REGISTRY   127.0.0.1:PORT (Debian's docker-registry, plain HTTP)
#   JOBRUN_TEST_POSTGRES   a postgres:// URL
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

start() {
	mkdir -p "$dir"
	: >"$dir/env"

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
	mkdir -p "$dir/pg"
	chown postgres "$dir/pg"
	chmod 755 "$dir"
	runuser -u postgres -- "$pgbin/initdb" -D "$dir/pg/data" -U postgres --auth=trust >"$dir/pg.log" 2>&1
	runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w \
		-o "-h 127.0.0.1 -p $pport -k $dir/pg -c fsync=off" start >>"$dir/pg.log" 2>&1
	echo "$pgbin" >"$dir/pg.bin"
	runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$pport" -U postgres jobrun >>"$dir/pg.log" 2>&1
	echo "export JOBRUN_TEST_POSTGRES=postgres://postgres@127.0.0.1:$pport/jobrun?sslmode=disable" >>"$dir/env"
}

stop() {
	for s in minio registry; do
		if [ -f "$dir/$s.pid" ]; then
			kill "$(cat "$dir/$s.pid")" 2>/dev/null || true
			rm -f "$dir/$s.pid"
		fi
	done
	if [ -f "$dir/pg.bin" ]; then
		runuser -u postgres -- "$(cat "$dir/pg.bin")/pg_ctl" -D "$dir/pg/data" -m immediate stop >/dev/null 2>&1 || true
		rm -f "$dir/pg.bin"
	fi
}

"$cmd"
