package agent

import (
	"reflect"
	"testing"

	"github.com/jobrun/jobrun/agent/image"
	"github.com/jobrun/jobrun/agent/network"
	"github.com/jobrun/jobrun/agent/sandbox"
	"github.com/jobrun/jobrun/jobs"
)

const testCerts = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

// testNet is a job's network as the Runner joins it (see joinNetwork).
var testNet = &network.Net{Path: "/run/netns/jobrun-t", ResolvConf: "/run/jobrun/t/resolv.conf"}

// specJob is the job the spec tables start from: a run's first attempt
// with nothing set beyond its names.
func specJob() *Job {
	return &Job{
		Job:      &jobs.Job{Name: "build (arch=amd64)", ID: "build-arch-amd64", Image: "debian"},
		Repo:     "https://example.com/r.git",
		Run:      "run-1",
		Attempt:  1,
		instance: "build-arch-amd64-abc123",
	}
}

// ciVars are the CI variables of specJob, in the order they are set.
var ciVars = []string{
	jobs.VarCI + "=true",
	jobs.VarJobrun + "=true",
	jobs.VarJob + "=build (arch=amd64)",
	jobs.VarRepo + "=https://example.com/r.git",
	jobs.VarRun + "=run-1",
	jobs.VarAttempt + "=1",
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// caEnv is every CA variable pointing at the job's bundle, in caVars'
// order.
func caEnv() []string {
	var out []string
	for _, k := range caVars {
		out = append(out, k+"="+sandbox.CABundlePath)
	}
	return out
}

// specRow is a row of the spec tables: what it changes from the table's
// start and what that makes of the spec expected at the start.
type specRow struct {
	name  string // what the row defends
	job   func(*Job)
	svc   jobs.Service // the service's Name and Image are set by checkSpecs
	img   image.Config // its Env comes after PATH=/usr/bin
	at    func(*hostParts)
	certs string
	net   *network.Net // joined as the Runner does, nil for none
	want  func(*sandbox.Spec)
}

// checkSpecs checks that build makes of each row's inputs, started from
// specJob, parts and the service db (postgres), the spec base makes as
// the row changes it, after joining the row's network as the Runner does.
func checkSpecs(t *testing.T, parts hostParts, base func() sandbox.Spec, build func(*Job, jobs.Service, image.Config, hostParts, []byte) sandbox.Spec, rows []specRow) {
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			j, img, at, svc := specJob(), tc.img, parts, tc.svc
			img.Env = append([]string{"PATH=/usr/bin"}, img.Env...)
			svc.Name, svc.Image = "db", "postgres"
			if tc.job != nil {
				tc.job(j)
			}
			if tc.at != nil {
				tc.at(&at)
			}
			var certs []byte
			if tc.certs != "" {
				certs = []byte(tc.certs)
			}
			got := build(j, svc, img, at, certs)
			joinNetwork(&got, tc.net, j.Services)
			want := base()
			if tc.want != nil {
				tc.want(&want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("spec:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestContainerSpecJob(t *testing.T) {
	mounts := []sandbox.Mount{{Source: "/var/lib/jobrun/caches/go", Target: "/root/go", Chown: true, IDMap: true}}
	parts := hostParts{Rootfs: "/var/lib/jobrun/snap/1/rootfs", Workspace: "/var/lib/jobrun/ws/1"}
	base := func() sandbox.Spec {
		return sandbox.Spec{
			ID:        "build-arch-amd64-abc123",
			Hostname:  "build-arch-amd64",
			Rootfs:    parts.Rootfs,
			Workspace: parts.Workspace,
			Env:       cat([]string{"PATH=/usr/bin"}, ciVars),
			Compat32:  true,
		}
	}
	checkSpecs(t, parts, base, func(j *Job, _ jobs.Service, img image.Config, at hostParts, certs []byte) sandbox.Spec {
		return jobSpec(j, img, at, certs)
	}, []specRow{{
		name: "the instance is the ID and the job's ID the hostname; rootfs and workspace as given; the image's env then CI's variables; 32-bit calls allowed",
	}, {
		name: "the image's user runs the steps",
		img:  image.Config{User: "1000:1000"},
		want: func(s *sandbox.Spec) { s.User = "1000:1000" },
	}, {
		name: "the image's working dir is not the steps' (they start in the workspace)",
		img:  image.Config{WorkingDir: "/app"},
	}, {
		name: "the job's limits bound the container",
		job:  func(j *Job) { j.Resources = jobs.Resources{CPUs: 1.5, Memory: 256 << 20, Pids: 100} },
		want: func(s *sandbox.Spec) { s.Resources = sandbox.Resources{CPUs: 1.5, Memory: 256 << 20, Pids: 100} },
	}, {
		name: "the job's network mode reaches the sandbox",
		job:  func(j *Job) { j.Network = jobs.NetworkNone },
		want: func(s *sandbox.Spec) { s.Network = "none" },
	}, {
		name: "a job on the job's network joins its namespace and DNS, with its services' names on localhost",
		job: func(j *Job) {
			j.Network = jobs.NetworkBridge
			j.Services = []jobs.Service{{Name: "db"}, {Name: "cache"}}
		},
		net: testNet,
		want: func(s *sandbox.Spec) {
			s.Network, s.NetNS, s.ResolvConf = "none", testNet.Path, testNet.ResolvConf
			s.Hosts = []string{"127.0.0.1\tdb", "127.0.0.1\tcache"}
		},
	}, {
		name: "the caches' mounts pass through as they are",
		at:   func(a *hostParts) { a.Mounts = mounts },
		want: func(s *sandbox.Spec) { s.Mounts = mounts },
	}, {
		name: "the user namespace and the idmapped workspace pass through",
		at:   func(a *hostParts) { a.UserNS, a.WorkspaceIDMap = "/proc/42/ns/user", true },
		want: func(s *sandbox.Spec) { s.UserNS, s.WorkspaceIDMap = "/proc/42/ns/user", true },
	}, {
		name: "builds_images makes a builder",
		job:  func(j *Job) { j.BuildsImages = true },
		want: func(s *sandbox.Spec) { s.Builder = true },
	}, {
		name: "the job's env, --env and secrets come after CI's variables",
		job: func(j *Job) {
			j.Job.Env = map[string]string{"B": "job"}
			j.Env = map[string]string{"C": "flag"}
			j.Secrets = map[string]string{"TOKEN": "s3cret"}
		},
		want: func(s *sandbox.Spec) { s.Env = append(s.Env, "B=job", "C=flag", "TOKEN=s3cret") },
	}, {
		name:  "CA certificates: the bundle is given and every CA variable points at it",
		certs: testCerts,
		want: func(s *sandbox.Spec) {
			s.CACerts = []byte(testCerts)
			s.Env = append(s.Env, caEnv()...)
		},
	}, {
		name:  "CA certificates: the image's CA variables point at the job's bundle, their files are kept in it",
		img:   image.Config{Env: []string{"SSL_CERT_FILE=/etc/ssl/own.pem"}},
		certs: testCerts,
		want: func(s *sandbox.Spec) {
			s.CACerts = []byte(testCerts)
			s.CABundles = []string{"/etc/ssl/own.pem"}
			s.Env = cat([]string{"PATH=/usr/bin"}, ciVars, caEnv())
		},
	}, {
		name:  "CA certificates: a CA variable the job, --env or a secret sets is left as set",
		certs: testCerts,
		job: func(j *Job) {
			j.Job.Env = map[string]string{"SSL_CERT_FILE": "/job.pem"}
			j.Env = map[string]string{"NODE_EXTRA_CA_CERTS": "/flag.pem"}
			j.Secrets = map[string]string{"GIT_SSL_CAINFO": "/secret.pem"}
		},
		want: func(s *sandbox.Spec) {
			s.CACerts = []byte(testCerts)
			s.Env = append(s.Env, "SSL_CERT_FILE=/job.pem", "NODE_EXTRA_CA_CERTS=/flag.pem", "GIT_SSL_CAINFO=/secret.pem",
				"REQUESTS_CA_BUNDLE="+sandbox.CABundlePath)
		},
	}, {
		name: "no CA certificates: the image's CA variables stay, its bundles are still named",
		img:  image.Config{Env: []string{"REQUESTS_CA_BUNDLE=/etc/ssl/py.pem"}},
		want: func(s *sandbox.Spec) {
			s.CABundles = []string{"/etc/ssl/py.pem"}
			s.Env = cat([]string{"PATH=/usr/bin", "REQUESTS_CA_BUNDLE=/etc/ssl/py.pem"}, ciVars)
		},
	}})
}

func TestContainerSpecService(t *testing.T) {
	parts := hostParts{Rootfs: "/var/lib/jobrun/snap/2/rootfs", UserNS: "/proc/42/ns/user"}
	base := func() sandbox.Spec {
		return sandbox.Spec{
			ID:       "build-arch-amd64-db-def456",
			Hostname: "db",
			Rootfs:   parts.Rootfs,
			UserNS:   parts.UserNS,
			Env:      []string{"PATH=/usr/bin"},
			Compat32: true,
		}
	}
	checkSpecs(t, parts, base, func(j *Job, svc jobs.Service, img image.Config, at hostParts, certs []byte) sandbox.Spec {
		return serviceSpec(j, svc, "build-arch-amd64-db-def456", img, at, certs)
	}, []specRow{{
		name: "the service's name is its hostname, the id as given; in the job's user namespace; only the image's env (no CI variables)",
	}, {
		name: "the image's user and working dir",
		img:  image.Config{User: "postgres", WorkingDir: "/var/lib/postgresql"},
		want: func(s *sandbox.Spec) { s.User, s.Cwd = "postgres", "/var/lib/postgresql" },
	}, {
		name: "the service's env replaces the image's values (whole names only) and comes last, sorted",
		img:  image.Config{Env: []string{"PGDATA=/data", "LANG=C"}},
		svc:  jobs.Service{Env: map[string]string{"PG": "x", "POSTGRES_PASSWORD": "pw", "LANG": "C.UTF-8"}},
		want: func(s *sandbox.Spec) {
			s.Env = []string{"PATH=/usr/bin", "PGDATA=/data", "LANG=C.UTF-8", "PG=x", "POSTGRES_PASSWORD=pw"}
		},
	}, {
		name: "the job's env, --env and secrets do not reach a service",
		job: func(j *Job) {
			j.Job.Env = map[string]string{"B": "job"}
			j.Env = map[string]string{"C": "flag"}
			j.Secrets = map[string]string{"TOKEN": "s3cret"}
		},
	}, {
		name: "a service has no workspace and no caches",
		at: func(a *hostParts) {
			a.Workspace, a.WorkspaceIDMap = "/var/lib/jobrun/ws/1", true
			a.Mounts = []sandbox.Mount{{Source: "/c", Target: "/c"}}
		},
	}, {
		name: "the job's limits bound each service",
		job:  func(j *Job) { j.Resources = jobs.Resources{CPUs: 0.5, Memory: 64 << 20, Pids: 50} },
		want: func(s *sandbox.Spec) { s.Resources = sandbox.Resources{CPUs: 0.5, Memory: 64 << 20, Pids: 50} },
	}, {
		name: "a service joins the job's network: its namespace and DNS, every service's name on localhost",
		job:  func(j *Job) { j.Services = []jobs.Service{{Name: "db"}, {Name: "cache"}} },
		net:  testNet,
		want: func(s *sandbox.Spec) {
			s.Network, s.NetNS, s.ResolvConf = "none", testNet.Path, testNet.ResolvConf
			s.Hosts = []string{"127.0.0.1\tdb", "127.0.0.1\tcache"}
		},
	}, {
		name:  "CA certificates: the service gets the bundle, its CA variables point at it unless its own env sets them",
		img:   image.Config{Env: []string{"GIT_SSL_CAINFO=/etc/ssl/git.pem"}},
		svc:   jobs.Service{Env: map[string]string{"SSL_CERT_FILE": "/svc.pem"}},
		certs: testCerts,
		job:   func(j *Job) { j.Job.Env = map[string]string{"NODE_EXTRA_CA_CERTS": "/job.pem"} },
		want: func(s *sandbox.Spec) {
			s.CACerts = []byte(testCerts)
			s.CABundles = []string{"/etc/ssl/git.pem"}
			s.Env = []string{"PATH=/usr/bin", "SSL_CERT_FILE=/svc.pem",
				"NODE_EXTRA_CA_CERTS=" + sandbox.CABundlePath,
				"REQUESTS_CA_BUNDLE=" + sandbox.CABundlePath,
				"GIT_SSL_CAINFO=" + sandbox.CABundlePath}
		},
	}})
}

func TestEnvironmentPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name  string // what the row defends
		image []string
		job   map[string]string // the job block's env
		flag  map[string]string // --env
		sec   map[string]string // secrets
		want  []string
	}{{
		name:  "the image's env first, in its order, then CI's variables",
		image: []string{"PATH=/usr/bin", "HOME=/root"},
		want:  cat([]string{"PATH=/usr/bin", "HOME=/root"}, ciVars),
	}, {
		name:  "CI's variables win over the image's, keeping the image's place",
		image: []string{jobs.VarCI + "=false", "PATH=/usr/bin", jobs.VarAttempt + "=9"},
		want: cat([]string{jobs.VarCI + "=true", "PATH=/usr/bin", jobs.VarAttempt + "=1"},
			ciVars[1:5]),
	}, {
		name: "the job's env wins over CI's variables",
		job:  map[string]string{jobs.VarJob: "mine"},
		want: cat(ciVars[:2], []string{jobs.VarJob + "=mine"}, ciVars[3:]),
	}, {
		name: "--env wins over the job's env",
		job:  map[string]string{"MODE": "job"},
		flag: map[string]string{"MODE": "flag"},
		want: cat(ciVars, []string{"MODE=flag"}),
	}, {
		name: "a secret wins over --env and the job's env",
		job:  map[string]string{"TOKEN": "job"},
		flag: map[string]string{"TOKEN": "flag"},
		sec:  map[string]string{"TOKEN": "s3cret"},
		want: cat(ciVars, []string{"TOKEN=s3cret"}),
	}, {
		name:  "a secret wins over the image's env",
		image: []string{"TOKEN=image"},
		sec:   map[string]string{"TOKEN": "s3cret"},
		want:  cat([]string{"TOKEN=s3cret"}, ciVars),
	}, {
		name: "each map's new names are added sorted, job's before --env's before secrets'",
		job:  map[string]string{"Z": "1", "A": "2", "M": "3"},
		flag: map[string]string{"Y": "4", "B": "5"},
		sec:  map[string]string{"X": "6", "C": "7"},
		want: cat(ciVars, []string{"A=2", "M=3", "Z=1", "B=5", "Y=4", "C=7", "X=6"}),
	}, {
		name:  "an image entry splits at its first '=', one without '=' is dropped",
		image: []string{"OPTS=a=b", "BROKEN", "EMPTY="},
		want:  cat([]string{"OPTS=a=b", "EMPTY="}, ciVars),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			j := specJob()
			j.Job.Env, j.Env, j.Secrets = tc.job, tc.flag, tc.sec
			for range 3 { // map order must not show
				if got := environment(tc.image, j); !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("environment:\n got %q\nwant %q", got, tc.want)
				}
			}
		})
	}
}

func TestCAEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string // what the row defends
		env     []string
		certs   string
		mine    []map[string]string
		want    []string
		bundles []string // imageCABundles(env)
	}{{
		name:    "no certificates: env as it was",
		env:     []string{"SSL_CERT_FILE=/etc/own.pem", "PATH=/bin"},
		want:    []string{"SSL_CERT_FILE=/etc/own.pem", "PATH=/bin"},
		bundles: []string{"/etc/own.pem"},
	}, {
		name:    "certificates: every CA variable set to the bundle, the image's replaced",
		env:     []string{"SSL_CERT_FILE=/etc/own.pem", "PATH=/bin"},
		certs:   testCerts,
		want:    cat([]string{"PATH=/bin"}, caEnv()),
		bundles: []string{"/etc/own.pem"},
	}, {
		name:  "a variable set by any of the job's maps is left as set",
		env:   []string{"PATH=/bin", "GIT_SSL_CAINFO=/mine.pem"},
		certs: testCerts,
		mine:  []map[string]string{nil, {"GIT_SSL_CAINFO": "/mine.pem"}},
		want: []string{"PATH=/bin", "GIT_SSL_CAINFO=/mine.pem", "SSL_CERT_FILE=" + sandbox.CABundlePath,
			"NODE_EXTRA_CA_CERTS=" + sandbox.CABundlePath, "REQUESTS_CA_BUNDLE=" + sandbox.CABundlePath},
		bundles: []string{"/mine.pem"},
	}, {
		name:  "a name that only starts like a CA variable is not one",
		env:   []string{"SSL_CERT_FILES=/x", "SSL_CERT_DIR=/etc/ssl/certs"},
		certs: testCerts,
		want:  cat([]string{"SSL_CERT_FILES=/x", "SSL_CERT_DIR=/etc/ssl/certs"}, caEnv()),
	}, {
		name:    "the image's bundles: absolute paths only, each once",
		env:     []string{"SSL_CERT_FILE=/etc/a.pem", "REQUESTS_CA_BUNDLE=/etc/a.pem", "NODE_EXTRA_CA_CERTS=rel.pem", "GIT_SSL_CAINFO=/etc/b.pem", "OTHER=/etc/c.pem"},
		want:    []string{"SSL_CERT_FILE=/etc/a.pem", "REQUESTS_CA_BUNDLE=/etc/a.pem", "NODE_EXTRA_CA_CERTS=rel.pem", "GIT_SSL_CAINFO=/etc/b.pem", "OTHER=/etc/c.pem"},
		bundles: []string{"/etc/a.pem", "/etc/b.pem"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var certs []byte
			if tc.certs != "" {
				certs = []byte(tc.certs)
			}
			if got := withCAEnv(append([]string(nil), tc.env...), certs, tc.mine...); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("withCAEnv:\n got %q\nwant %q", got, tc.want)
			}
			if got := imageCABundles(tc.env); !reflect.DeepEqual(got, tc.bundles) {
				t.Errorf("imageCABundles: got %q, want %q", got, tc.bundles)
			}
		})
	}
}
