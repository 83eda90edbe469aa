#!/usr/bin/env bash
# Starts the registry examples/image-build pushes to, as a real one would be:
# Debian's docker-registry with TLS (a certificate of a CA made here) and
# htpasswd auth, on a host address that is not loopback (jobs cannot reach
# 127.0.0.1 of the host, whatever is allowed): an address of the benchmark
# range 198.18.0.0/15 (RFC 2544) that no link of the host has yet, put on lo
# (this kernel may have no dummy links) and taken off again by stop. It writes DIR/env:
#   EXAMPLE_REGISTRY           ADDR:5000, what jobs push to and the agent pulls from
#   EXAMPLE_REGISTRY_USER      ci
#   EXAMPLE_REGISTRY_PASSWORD  a fresh random password
#   EXAMPLE_REGISTRY_CA        DIR/ca.pem, the CA jobs and the agent trust
#                              (ca_file, --ca-file)
#   EXAMPLE_REGISTRY_CERTS     DIR/certs, the CA as a certs dir for skopeo's
#                              --dest-cert-dir
# Jobs reach it through the agent's `network { allow = ["ADDR:5000"] }`
# (`jobrun local --allow`). stop kills the registry and takes the address
# off; it leaves DIR to its owner. start on a DIR already started stops that
# first. Needs root (ip addr), docker-registry, openssl, and htpasswd
# (apache2-utils) or python3 for the password's bcrypt hash.
# usage: example-registry.sh start DIR | stop DIR
set -euo pipefail
cmd=${1:?usage: example-registry.sh start|stop DIR}
dir=${2:?usage: example-registry.sh start|stop DIR}
port=5000

say() { echo "example-registry: $*" >&2; }
die() {
	say "$*"
	exit 1
}

bcrypt() { # bcrypt PASSWORD: its bcrypt hash, as docker-registry wants
	if command -v htpasswd >/dev/null; then
		htpasswd -nbB x "$1" | cut -d: -f2- | head -n1
	elif command -v python3 >/dev/null; then
		python3 -W ignore -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))' "$1"
	else
		die "needs htpasswd (apache2-utils) or python3 to hash the password"
	fi
}

stop() {
	local pid addr
	if [ -f "$dir/registry.pid" ]; then
		pid=$(cat "$dir/registry.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$dir/registry.pid"
	fi
	if [ -f "$dir/addr" ]; then
		addr=$(cat "$dir/addr")
		# ip's output whole, then grep: with pipefail, grep -q ending first
		# could fail the pipe (SIGPIPE) and leave the address on.
		if [[ $(ip -4 -o addr show dev lo) == *" $addr/32 "* ]]; then
			ip addr del "$addr/32" dev lo
		fi
		rm -f "$dir/addr"
	fi
	rm -f "$dir/env"
}

start() {
	local t addr pass i
	[ "$(id -u)" = 0 ] || die "needs root (it puts an address on lo)"
	for t in docker-registry openssl ip; do
		command -v "$t" >/dev/null || die "needs $t on PATH"
	done
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd -P)
	stop
	trap 'rc=$?; if [ $rc != 0 ]; then say "start failed; stopping what it started"; stop; fi' EXIT

	# An address no link has: the registry's own, so port 5000 is free on
	# it. 198.18.N.10-249: the network tests' stand-ins for the internet are
	# 198.18.N.1 and .2 (and their bridges 198.19.N.0/24), never these.
	for i in $(seq 1 100); do
		addr=198.18.$((RANDOM % 256)).$((10 + RANDOM % 240))
		[[ $(ip -4 -o addr show) == *" $addr/"* ]] || break
		[ "$i" != 100 ] || die "no free address in 198.18.0.0/16"
	done
	echo "$addr" >"$dir/addr"
	ip addr add "$addr/32" dev lo

	# The test CA and the registry's certificate, for its address.
	(
		cd "$dir"
		openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
			-keyout ca.key -out ca.pem -days 2 -subj "/CN=jobrun example registry CA" \
			-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
		openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
			-keyout server.key -out server.csr -subj "/CN=$addr"
		printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$addr" >server.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
			-out server.pem -days 2 -extfile server.ext
		mkdir -p certs
		cp ca.pem certs/ca.crt
	) >"$dir/openssl.log" 2>&1 || {
		cat "$dir/openssl.log" >&2
		die "openssl could not make the certificates (its output is above)"
	}

	pass=example-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	printf 'ci:%s\n' "$(bcrypt "$pass")" >"$dir/htpasswd"
	mkdir -p "$dir/data"
	cat >"$dir/registry.yml" <<-EOT
		version: 0.1
		log:
		  level: warn
		storage:
		  filesystem:
		    rootdirectory: $dir/data
		http:
		  addr: $addr:$port
		  tls:
		    certificate: $dir/server.pem
		    key: $dir/server.key
		auth:
		  htpasswd:
		    realm: jobrun-example
		    path: $dir/htpasswd
	EOT
	docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
	echo $! >"$dir/registry.pid"
	for i in $(seq 1 200); do
		(exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null && break
		if [ "$i" = 200 ] || ! kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
			cat "$dir/registry.log" >&2
			die "docker-registry did not start on $addr:$port (its log is above)"
		fi
		sleep 0.05
	done
	cat >"$dir/env" <<-EOT
		export EXAMPLE_REGISTRY=$addr:$port
		export EXAMPLE_REGISTRY_USER=ci
		export EXAMPLE_REGISTRY_PASSWORD=$pass
		export EXAMPLE_REGISTRY_CA=$dir/ca.pem
		export EXAMPLE_REGISTRY_CERTS=$dir/certs
	EOT
	say "docker-registry on https://$addr:$port (user ci; CA $dir/ca.pem)"
}

case $cmd in
start | stop) "$cmd" ;;
*) die "unknown command $cmd: want start or stop" ;;
esac
