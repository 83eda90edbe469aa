//go:build ignore

// (That line keeps the go command from taking this file for a cgo source
// of the Go test package in this directory: it is built by itself.)

/*
 * jobrun-launcher is PID 1 of every jobrun job container. It is a static C
 * program (so it runs in any image) and is bound read-only into the
 * container by package sandbox, which talks to it over an inherited socket
 * (the protocol is package agent/sandbox/internal/wire; this file mirrors
 * it byte for byte).
 *
 *   cc -static -O2 -Wall -Wextra -Werror -o jobrun-launcher launcher.c
 *
 * It loads the container's seccomp filter into itself before it does
 * anything else (and, without no_new_privs, a user namespace's container,
 * then drops the CAP_SYS_ADMIN it was given for that), then starts each step the agent asks for as its own
 * child, with the step's user, groups, environment, working directory and
 * stdio (a step marked Nest, a building container's root step, as root of
 * a user namespace of its own nested in the container's: see nest_maps),
 * and reports how the step ended. Steps so inherit the container's
 * namespaces, cgroup, seccomp filter, no_new_privs and capability bounding
 * set from one place, with no setup process per step. Like tini it reaps
 * every orphan in the container (as PID 1, or as a child subreaper when it
 * shares the host's pid namespace), forwards termination signals to the
 * running steps, and dies with a SIGKILL when the agent thread that
 * started it ends, which takes the whole pid namespace with it.
 *
 * It exits when the agent closes its end of the control socket.
 *
 * Why C: every container waits for this program to answer Ready, and the
 * Go runtime's start-up (threads, heap, signal handlers) was most of that
 * wait: about 1.8 ms from exec to Ready for the Go launcher against 0.7 ms
 * for this one. It is one thread with one poll loop: the control socket
 * brings steps, a signalfd brings SIGCHLD and the signals to forward, and
 * each step is forked and exec'd on the spot, so no step waits for a
 * thread hand-off either.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The wire protocol: see package wire, whose names these are. */
enum { CONTROL_FD = 3 };
enum {
	TAG_SETUP = 'F',   /* agent → launcher, control: the seccomp filter */
	TAG_READY = 'R',   /* launcher → agent, control: filter loaded */
	TAG_RUN = 'X',     /* agent → launcher, control: a step (with 4 fds) */
	TAG_REQUEST = 'Q', /* agent → launcher, step socket: the encoded Proc */
	TAG_STARTED = 'S', /* launcher → agent, step socket: the step runs */
	TAG_FAILED = 'E',  /* launcher → agent: a reason in words */
	TAG_EXITED = 'W',  /* launcher → agent, step socket: wait status */
};
#define MAX_FRAME (16u << 20)

/* groups_denied is set when this user namespace has "deny" in
 * /proc/self/setgroups: jobrun without root with only the user's own uid
 * mapped (own-uid mode, issue #18), where nobody may call setgroups and
 * every process keeps the invoking user's groups. Steps then keep them
 * too, as with runc; anywhere else a failed setgroups fails the step. */
static int groups_denied;

/* read_groups_denied reads /proc/self/setgroups once, before any step. */
static void read_groups_denied(void)
{
	char b[8] = {0};
	int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	groups_denied = n >= 4 && memcmp(b, "deny", 4) == 0;
}

/* The signals passed on to every running step's process group. */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

/* A string of known length: the wire's strings may hold NUL bytes, which
 * execve cannot take and which are errors (EINVAL) as in Go's ForkExec. */
struct str {
	char *s; /* NUL-terminated copy */
	uint32_t len;
};

static int has_nul(const struct str *s) { return memchr(s->s, 0, s->len) != NULL; }

/* proc is wire.Proc. */
struct proc {
	struct str path, dir;
	struct str *args, *env;
	uint32_t nargs, nenv;
	uint32_t uid, gid;
	gid_t *groups;
	uint32_t ngroups;
	uint32_t nest; /* start in a nested user and mount namespace */
};

/* A running step: its pid (and process group) and the socket on which
 * its Exited goes. */
struct step {
	pid_t pid;
	int sock;
};

struct launcher {
	struct step *steps;
	size_t nsteps, cap;
	/* The signal mask this process started with, which steps get back. */
	sigset_t initial_mask;
	int sigfd;
	/* The identity uid and gid maps of nested steps (nest_maps), read
	 * at the first. */
	char *idmap[2];
};

/* ---- errors ------------------------------------------------------------ */

/* cat returns the concatenation of its arguments, up to a NULL, in a new
 * string; errors are built with it, as in the Go launcher's messages. */
static char *cat(const char *first, ...)
{
	va_list ap;
	size_t n = 0;
	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *))
		n += strlen(s);
	va_end(ap);
	char *out = malloc(n + 1);
	if (!out)
		abort();
	char *p = out;
	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *)) {
		size_t l = strlen(s);
		memcpy(p, s, l);
		p += l;
	}
	va_end(ap);
	*p = 0;
	return out;
}

/* errstr is strerror as Go spells it (the agent's tests and users see the
 * same words as from the Go launcher): glibc's words, lower case first. */
static const char *errstr(int e, char buf[static 128])
{
	snprintf(buf, 128, "%s", strerror(e));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] += 'a' - 'A';
	return buf;
}

static void die(const char *msg)
{
	char *line = cat("jobrun-launcher: ", msg, "\n", NULL);
	ssize_t r = write(2, line, strlen(line));
	(void)r;
	_exit(1);
}

static void die_errno(const char *what, int e)
{
	char buf[128];
	die(cat(what, ": ", errstr(e, buf), NULL));
}

/* ---- wire encoding ----------------------------------------------------- */

static void put_u32(unsigned char *b, uint32_t v)
{
	b[0] = v;
	b[1] = v >> 8;
	b[2] = v >> 16;
	b[3] = v >> 24;
}

static uint32_t u32_at(const unsigned char *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* write_all writes all of b to the stream socket fd. MSG_NOSIGNAL: an
 * agent that gave up on a step must not kill the launcher with SIGPIPE. */
static int write_all(int fd, const void *b, size_t n)
{
	const char *p = b;
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= w;
	}
	return 0;
}

/* write_frame is wire.WriteFrame: tag, u32 length, payload. */
static int write_frame(int fd, unsigned char tag, const void *payload, uint32_t n)
{
	unsigned char h[5];
	h[0] = tag;
	put_u32(h + 1, n);
	if (n == 0)
		return write_all(fd, h, 5);
	/* One write, as the Go side does, so the agent reads it in one go. */
	unsigned char *b = malloc(5 + (size_t)n);
	if (!b)
		abort();
	memcpy(b, h, 5);
	memcpy(b + 5, payload, n);
	int r = write_all(fd, b, 5 + (size_t)n);
	free(b);
	return r;
}

static int read_full(int fd, void *b, size_t n)
{
	char *p = b;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

/* read_frame is wire.ReadFrame: it returns the payload (malloc'd, *n
 * bytes) or NULL on any error, which the caller does not answer. */
static unsigned char *read_frame(int fd, unsigned char *tag, uint32_t *n)
{
	unsigned char h[5];
	if (read_full(fd, h, 5) < 0)
		return NULL;
	*tag = h[0];
	*n = u32_at(h + 1);
	if (*n > MAX_FRAME)
		return NULL;
	unsigned char *b = malloc(*n ? *n : 1);
	if (!b)
		abort();
	if (read_full(fd, b, *n) < 0) {
		free(b);
		return NULL;
	}
	return b;
}

/* decoder walks a Proc payload, as wire.Proc.Unmarshal does. */
struct decoder {
	const unsigned char *b;
	size_t len;
};

static int dec_u32(struct decoder *d, uint32_t *v)
{
	if (d->len < 4)
		return -1;
	*v = u32_at(d->b);
	d->b += 4;
	d->len -= 4;
	return 0;
}

static int dec_str(struct decoder *d, struct str *s)
{
	uint32_t n;
	if (dec_u32(d, &n) < 0 || n > d->len)
		return -1;
	s->s = malloc((size_t)n + 1);
	if (!s->s)
		abort();
	memcpy(s->s, d->b, n);
	s->s[n] = 0;
	s->len = n;
	d->b += n;
	d->len -= n;
	return 0;
}

static int dec_strs(struct decoder *d, struct str **ss, uint32_t *count)
{
	uint32_t n;
	if (dec_u32(d, &n) < 0)
		return -1;
	/* Each string takes at least its 4-byte length. */
	if ((uint64_t)n * 4 > d->len)
		return -1;
	*ss = calloc((size_t)n + 1, sizeof **ss);
	if (!*ss)
		abort();
	for (*count = 0; *count < n; (*count)++)
		if (dec_str(d, &(*ss)[*count]) < 0)
			return -1;
	return 0;
}

static void free_strs(struct str *ss, uint32_t n)
{
	for (uint32_t i = 0; ss && i < n; i++)
		free(ss[i].s);
	free(ss);
}

static void free_proc(struct proc *p)
{
	free(p->path.s);
	free(p->dir.s);
	free_strs(p->args, p->nargs);
	free_strs(p->env, p->nenv);
	free(p->groups);
	memset(p, 0, sizeof *p);
}

/* decode_proc is wire.Proc.Unmarshal; it returns NULL or the error, worded
 * as Unmarshal's (the launcher's tests compare the two). */
static const char *decode_proc(const unsigned char *b, size_t len, struct proc *p)
{
	struct decoder d = {b, len};
	memset(p, 0, sizeof *p);
	if (dec_str(&d, &p->path) < 0)
		return "decode step: path: truncated";
	if (dec_strs(&d, &p->args, &p->nargs) < 0)
		return "decode step: args: truncated";
	if (dec_strs(&d, &p->env, &p->nenv) < 0)
		return "decode step: env: truncated";
	if (dec_str(&d, &p->dir) < 0)
		return "decode step: dir: truncated";
	if (dec_u32(&d, &p->uid) < 0)
		return "decode step: uid: truncated";
	if (dec_u32(&d, &p->gid) < 0)
		return "decode step: gid: truncated";
	if (dec_u32(&d, &p->nest) < 0)
		return "decode step: nest: truncated";
	uint32_t n;
	if (dec_u32(&d, &n) < 0 || (uint64_t)n * 4 != d.len)
		return "decode step: groups: truncated";
	p->groups = calloc((size_t)n + 1, sizeof *p->groups);
	if (!p->groups)
		abort();
	for (p->ngroups = 0; p->ngroups < n; p->ngroups++)
		dec_u32(&d, &p->groups[p->ngroups]);
	return NULL;
}

/* ---- setup ------------------------------------------------------------- */

/* recv_all receives one whole message from the SOCK_SEQPACKET socket fd,
 * however long: a peek with MSG_TRUNC says how long it is. */
static unsigned char *recv_all(int fd, size_t *len, int *err)
{
	unsigned char one;
	ssize_t n;
	do
		n = recv(fd, &one, 1, MSG_PEEK | MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		*err = errno;
		return NULL;
	}
	unsigned char *b = malloc(n ? (size_t)n : 1);
	if (!b)
		abort();
	do
		n = recv(fd, b, n, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		*err = errno;
		free(b);
		return NULL;
	}
	*len = n;
	return b;
}

/* load_filter loads prog, raw struct sock_filter entries, with flags as the
 * seccomp filter of this process, so every step inherits it. TSYNC as the
 * Go launcher had (its runtime had several threads); with one thread it
 * costs nothing and keeps the two alike. */
static char *load_filter(const unsigned char *prog, size_t len, uint32_t flags)
{
	if (len % sizeof(struct sock_filter) != 0 || len / sizeof(struct sock_filter) > 0xffff)
		return cat("seccomp filter: bad length", NULL);
	/* A copy: the message's bytes start at an odd offset. */
	struct sock_filter *filter = malloc(len);
	if (!filter)
		abort();
	memcpy(filter, prog, len);
	struct sock_fprog fprog = {.len = len / sizeof(struct sock_filter), .filter = filter};
	long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags | SECCOMP_FILTER_FLAG_TSYNC, &fprog);
	int e = errno;
	free(filter);
	char buf[128];
	if (r < 0)
		return cat("load seccomp filter: ", errstr(e, buf), NULL);
	if (r > 0) {
		snprintf(buf, sizeof buf, "%ld", r);
		return cat("load seccomp filter: thread ", buf, " could not be synchronised", NULL);
	}
	return NULL;
}

/* drop_sys_admin takes CAP_SYS_ADMIN out of every capability set of this
 * process, the bounding set included, so no step can ever hold it. In a
 * user namespace (no no_new_privs) loading a seccomp filter needs
 * CAP_SYS_ADMIN: the agent gives it to this process for that alone. */
static char *drop_sys_admin(void)
{
	char buf[128];
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) < 0)
		return cat("drop CAP_SYS_ADMIN from the bounding set: ", errstr(errno, buf), NULL);
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	if (syscall(SYS_capget, &hdr, data) < 0)
		return cat("read capabilities: ", errstr(errno, buf), NULL);
	uint32_t bit = 1u << (CAP_SYS_ADMIN % 32);
	int i = CAP_SYS_ADMIN / 32;
	data[i].effective &= ~bit;
	data[i].permitted &= ~bit;
	data[i].inheritable &= ~bit;
	if (syscall(SYS_capset, &hdr, data) < 0)
		return cat("drop CAP_SYS_ADMIN: ", errstr(errno, buf), NULL);
	if (prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0)
		return cat("CAP_SYS_ADMIN still in the bounding set", NULL);
	return NULL;
}

/* setup reads the Setup message and loads its seccomp filter (if any).
 * Nothing the agent asks for runs before the filter is in place. It
 * returns NULL or why it failed. */
static char *setup(void)
{
	size_t len;
	int e;
	unsigned char *msg = recv_all(CONTROL_FD, &len, &e);
	if (!msg) {
		char buf[128];
		return cat("read setup: ", errstr(e, buf), NULL);
	}
	char *err = NULL;
	if (len == 0 || msg[0] != TAG_SETUP)
		err = cat("first message is not a setup message", NULL);
	else if (len < 5)
		err = cat("decode filter: truncated", NULL);
	else if (len > 5)
		err = load_filter(msg + 5, len - 5, u32_at(msg + 1));
	/* A filtered container without no_new_privs is a user namespace's:
	 * its CAP_SYS_ADMIN was for loading the filter only (see sandbox's
	 * Start). A privileged one has no filter and keeps its capabilities. */
	if (!err && len > 5 && prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0)
		err = drop_sys_admin();
	free(msg);
	return err;
}

static int send_control(const void *msg, size_t n)
{
	ssize_t r;
	do
		r = send(CONTROL_FD, msg, n, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -1 : 0;
}

/* ---- PATH lookup ------------------------------------------------------- */

/* clean is Go's path/filepath.Clean (on Linux): the shortest equivalent
 * path, so that names come out as the Go launcher gave them. */
static char *clean(const char *path)
{
	size_t n = strlen(path);
	if (n == 0)
		return cat(".", NULL);
	char *out = malloc(n + 2);
	if (!out)
		abort();
	int rooted = path[0] == '/';
	size_t w = 0, r = 0, dotdot = 0;
	if (rooted) {
		out[w++] = '/';
		r = dotdot = 1;
	}
	while (r < n) {
		if (path[r] == '/') {
			r++;
		} else if (path[r] == '.' && (r + 1 == n || path[r + 1] == '/')) {
			r++;
		} else if (path[r] == '.' && path[r + 1] == '.' && (r + 2 == n || path[r + 2] == '/')) {
			r += 2;
			if (w > dotdot) {
				w--;
				while (w > dotdot && out[w] != '/')
					w--;
			} else if (!rooted) {
				if (w > 0)
					out[w++] = '/';
				out[w++] = '.';
				out[w++] = '.';
				dotdot = w;
			}
		} else {
			if ((rooted && w != 1) || (!rooted && w != 0))
				out[w++] = '/';
			for (; r < n && path[r] != '/'; r++)
				out[w++] = path[r];
		}
	}
	if (w == 0)
		out[w++] = '.';
	out[w] = 0;
	return out;
}

/* join is Go's filepath.Join of two elements. */
static char *join(const char *a, const char *b)
{
	if (!*a && !*b)
		return cat("", NULL);
	if (!*a)
		return clean(b);
	if (!*b)
		return clean(a);
	char *ab = cat(a, "/", b, NULL);
	char *c = clean(ab);
	free(ab);
	return c;
}

/* look_path finds p's program: as given if it has a "/", else in the PATH
 * of p's environment (the first PATH= entry), as execvp would: empty
 * entries mean ".", relative ones are taken from p's directory, and
 * anything but an executable regular file is skipped. It returns the path
 * (malloc'd), or NULL and sets *err. */
static char *look_path(const struct proc *p, char **err)
{
	if (memchr(p->path.s, '/', p->path.len))
		return cat(p->path.s, NULL);
	/* A name with a NUL byte names no file: no PATH is searched. */
	const char *path = NULL;
	for (uint32_t i = 0; i < p->nenv && !has_nul(&p->path); i++)
		if (strncmp(p->env[i].s, "PATH=", 5) == 0) {
			path = p->env[i].s + 5;
			break;
		}
	/* No PATH or an empty one has no entries (filepath.SplitList). */
	while (path && *path) {
		const char *end = strchr(path, ':');
		size_t l = end ? (size_t)(end - path) : strlen(path);
		char *dir = l ? strndup(path, l) : cat(".", NULL);
		char *f = join(dir, p->path.s);
		free(dir);
		if (f[0] != '/') {
			char *abs = join(p->dir.s, f);
			free(f);
			f = abs;
		}
		struct stat st;
		if (stat(f, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
			return f;
		free(f);
		if (!end)
			break;
		path = end + 1;
	}
	*err = cat("exec ", p->path.s, ": executable file not found in $PATH", NULL);
	return NULL;
}

/* ---- starting a step --------------------------------------------------- */

/* What the child needs between clone and execve. */
struct child_args {
	const struct proc *p;
	const char *path;
	char **argv, **envp;
	int stdio[3];
	int errpipe;
	/* A nested step's (p->nest) read end of the pipe on which the
	 * launcher says its maps are written; -1 otherwise. */
	int syncfd;
	const sigset_t *mask;
};

/* What a child that failed before exec was doing: the launcher words its
 * error from this and the errno, both sent on the error pipe. */
enum { FAIL_EXEC, FAIL_SYNC, FAIL_MOUNTNS };

/* child runs in the new process, which shares this one's memory until it
 * execs (CLONE_VM|CLONE_VFORK, as Go's ForkExec: no page tables to copy;
 * a nested step's has a copy of its own, see start), so it only makes
 * system calls, raw ones where glibc's wrappers would coordinate threads. The order is ForkExec's: session, signal mask,
 * groups, gid, uid, then chdir as that user, stdio, exec. An errno before
 * exec goes back on the close-on-exec pipe; exec closes it on success. */
static int child(void *arg)
{
	struct child_args *a = arg;
	const struct proc *p = a->p;
	int fd[3], stage = FAIL_EXEC;
	/* A nested step starts in its new user namespace, whose maps the
	 * launcher writes from the container's (see nest_maps); then it
	 * makes its mount namespace, owned by the new user namespace, so
	 * mounts it makes stay its own and the container's are locked. */
	if (a->syncfd >= 0) {
		char c;
		ssize_t n;
		stage = FAIL_SYNC;
		do
			n = syscall(SYS_read, a->syncfd, &c, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1) {
			if (n == 0)
				errno = EPIPE;
			goto fail;
		}
		stage = FAIL_MOUNTNS;
		if (syscall(SYS_unshare, CLONE_NEWNS) < 0)
			goto fail;
		stage = FAIL_EXEC;
	}
	/* Each step leads its own session, as libcontainer's processes did:
	 * no controlling terminal, its own group for forwarded signals. */
	if (syscall(SYS_setsid) < 0)
		goto fail;
	/* The launcher blocks the signals its signalfd reads; the step gets
	 * the mask the launcher started with. It installs no handlers, so
	 * every disposition is what the launcher inherited, as with Go,
	 * whose runtime restores the inherited ones in the child. */
	if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, a->mask, NULL, _NSIG / 8) < 0)
		goto fail;
	/* Set the groups, possibly to none, not keep the launcher's. Leaving
	 * uid 0 clears the permitted and effective capabilities;
	 * no_new_privs keeps execve from granting any. */
	if (!groups_denied && syscall(SYS_setgroups, (size_t)p->ngroups, p->groups) < 0)
		goto fail;
	if (syscall(SYS_setgid, (gid_t)p->gid) < 0)
		goto fail;
	if (syscall(SYS_setuid, (uid_t)p->uid) < 0)
		goto fail;
	if (p->dir.len > 0 && syscall(SYS_chdir, p->dir.s) < 0)
		goto fail;
	/* stdio to 0, 1, 2. One below 3 could be overwritten by another's
	 * dup3 first: such fds move above 2 first. dup3 clears the
	 * close-on-exec flag of the new descriptor. */
	for (int i = 0; i < 3; i++) {
		fd[i] = a->stdio[i];
		if (fd[i] < 3 && (fd[i] = syscall(SYS_fcntl, fd[i], F_DUPFD_CLOEXEC, 3)) < 0)
			goto fail;
	}
	for (int i = 0; i < 3; i++)
		if (syscall(SYS_dup3, fd[i], i, 0) < 0)
			goto fail;
	syscall(SYS_execve, a->path, a->argv, a->envp);
fail:;
	int msg[2] = {stage, errno};
	ssize_t r = write(a->errpipe, msg, sizeof msg);
	(void)r;
	_exit(253);
}

/* start_error is the Go launcher's reason for a start that failed with
 * errno e: the working directory's problem if it has one (a chdir that
 * failed, most likely), else exec's. */
static char *start_error(const struct proc *p, const char *path, int e)
{
	char buf[128];
	struct stat st;
	if (has_nul(&p->dir))
		return cat("working directory ", p->dir.s, ": ", errstr(EINVAL, buf), NULL);
	if (stat(p->dir.s, &st) < 0)
		return cat("working directory ", p->dir.s, ": ", errstr(errno, buf), NULL);
	if (!S_ISDIR(st.st_mode))
		return cat("working directory ", p->dir.s, ": not a directory", NULL);
	return cat("exec ", path, ": ", errstr(e, buf), NULL);
}

/* nest_error is a nested step's error: what failed and errno e. */
static char *nest_error(const char *what, int e)
{
	char buf[128];
	return cat("start step in a nested user namespace: ", what, ": ", errstr(e, buf), NULL);
}

/* identity_map returns the identity mapping of the ids this process's
 * user namespace maps, read from /proc/self/NAME ("0 0 65536" for a job's
 * range), as one text for a nested namespace's NAME; NULL and *err if it
 * cannot be read. Read once per launcher: the container's maps are set
 * before it starts. */
static char *identity_map(const char *name, char **err)
{
	char path[32], buf[8192];
	snprintf(path, sizeof path, "/proc/self/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*err = nest_error(cat("read ", path, NULL), errno);
		return NULL;
	}
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			*err = nest_error(cat("read ", path, NULL), e);
			return NULL;
		}
		if (n == 0 || (len += n) == sizeof buf - 1)
			break;
	}
	close(fd);
	if (len == sizeof buf - 1) {
		/* Never a map cut short: a job's is one line; the kernel's
		 * longest (340 lines) does not fit, and is refused. */
		*err = nest_error(cat("read ", path, NULL), E2BIG);
		return NULL;
	}
	buf[len] = 0;
	char *out = malloc(len + 1), *w = out;
	if (!out)
		abort();
	*w = 0;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long inside, outside, count;
		if (sscanf(line, "%lu %lu %lu", &inside, &outside, &count) != 3)
			continue;
		/* The identity line is never longer than the read one. */
		w += sprintf(w, "%lu %lu %lu\n", inside, inside, count);
	}
	if (w == out) {
		free(out);
		*err = nest_error(cat("read ", path, NULL), ENODATA);
		return NULL;
	}
	return out;
}

/* nest_maps writes the nested user namespace of the child pid its uid
 * and gid maps: the identity over the container's ids. Only a process of
 * the parent namespace holding CAP_SETUID and CAP_SETGID there (this one,
 * the container's root) may write a map of more than one id, on a file
 * it opened itself (kernel/user_namespace.c, new_idmap_permitted). It
 * returns NULL or the error. */
static char *nest_maps(struct launcher *l, pid_t pid)
{
	static const char *names[2] = {"uid_map", "gid_map"};
	char *err = NULL;
	for (int i = 0; i < 2; i++) {
		if (!l->idmap[i] && !(l->idmap[i] = identity_map(names[i], &err)))
			return err;
		char path[64];
		snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, names[i]);
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return nest_error(cat("open ", path, NULL), errno);
		/* The kernel takes a map in one write only. */
		size_t n = strlen(l->idmap[i]);
		ssize_t w = write(fd, l->idmap[i], n);
		int e = w < 0 ? errno : EIO;
		close(fd);
		if (w != (ssize_t)n)
			return nest_error(cat("write ", path, " \"", l->idmap[i], "\"", NULL), e);
	}
	return NULL;
}

static char **str_ptrs(const struct str *ss, uint32_t n)
{
	char **v = calloc((size_t)n + 1, sizeof *v);
	if (!v)
		abort();
	for (uint32_t i = 0; i < n; i++)
		v[i] = ss[i].s;
	return v;
}

/* The new process's stack until it execs: one suffices, as CLONE_VFORK
 * holds this process until then (and a nested step's process, forked,
 * has its own copy). */
static _Alignas(64) char child_stack[64 << 10];

/* start forks and execs p with stdio as its fds 0, 1 and 2. It returns
 * the pid, or -1 and sets *err. */
static pid_t start(struct launcher *l, const struct proc *p, const int stdio[3], char **err)
{
	char *path = look_path(p, err);
	if (!path)
		return -1;
	struct child_args a = {
		.p = p,
		.path = path,
		.argv = str_ptrs(p->args, p->nargs),
		.envp = str_ptrs(p->env, p->nenv),
		.stdio = {stdio[0], stdio[1], stdio[2]},
		.mask = &l->initial_mask,
	};
	pid_t pid = -1;
	int e = 0, pipefd[2], syncfd[2] = {-1, -1}, msg[2] = {FAIL_EXEC, 0};
	char *nerr = NULL;
	a.syncfd = -1;
	/* Strings with NUL bytes cannot be passed: EINVAL, as ForkExec. */
	int bad = has_nul(&p->dir) || has_nul(&p->path);
	for (uint32_t i = 0; i < p->nargs; i++)
		bad |= has_nul(&p->args[i]);
	for (uint32_t i = 0; i < p->nenv; i++)
		bad |= has_nul(&p->env[i]);
	if (bad) {
		e = EINVAL;
	} else if (p->nest && pipe2(syncfd, O_CLOEXEC) < 0) {
		nerr = nest_error("pipe", errno);
	} else if (pipe2(pipefd, O_CLOEXEC) < 0) {
		e = errno;
	} else {
		a.errpipe = pipefd[1];
		/* A nested step cannot share this process's memory and hold
		 * it until exec (vfork): this process writes its maps first,
		 * while it waits. It forks, with its own user namespace. */
		int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
		if (p->nest) {
			a.syncfd = syncfd[0];
			flags = CLONE_NEWUSER | SIGCHLD;
		}
		pid = clone(child, child_stack + sizeof child_stack, flags, &a);
		if (pid < 0 && p->nest)
			nerr = nest_error("new user namespace", errno);
		else if (pid < 0)
			e = errno;
		close(pipefd[1]);
		if (pid > 0 && p->nest) {
			nerr = nest_maps(l, pid);
			if (!nerr && write(syncfd[1], "", 1) != 1)
				nerr = nest_error("resume the step", errno);
			if (nerr) {
				/* Never run it un-nested: it dies before exec. */
				kill(pid, SIGKILL);
				while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
					;
				pid = -1;
			}
		}
		if (pid > 0) {
			ssize_t n;
			do
				n = read(pipefd[0], msg, sizeof msg);
			while (n < 0 && errno == EINTR);
			if (n == sizeof msg) {
				/* It failed before exec and exited: collect it
				 * now, it is no step. */
				while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
					;
				pid = -1;
				e = msg[1];
				if (msg[0] == FAIL_SYNC)
					nerr = nest_error("wait for the maps", e);
				else if (msg[0] == FAIL_MOUNTNS)
					nerr = nest_error("new mount namespace", e);
			} else {
				e = 0;
			}
		}
		close(pipefd[0]);
	}
	if (syncfd[0] >= 0) {
		close(syncfd[0]);
		close(syncfd[1]);
	}
	free(a.argv);
	free(a.envp);
	if (pid < 0)
		*err = nerr ? nerr : start_error(p, path, e);
	else
		free(nerr);
	free(path);
	return pid;
}

static void add_step(struct launcher *l, pid_t pid, int sock)
{
	if (l->nsteps == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->steps = realloc(l->steps, l->cap * sizeof *l->steps);
		if (!l->steps)
			abort();
	}
	l->steps[l->nsteps++] = (struct step){pid, sock};
}

/* serve starts one step: it reads the request from the step socket, starts
 * the process and answers Started, or Failed. reap answers Exited when the
 * process ends, and closes the socket. fds are the step socket and stdio,
 * all close-on-exec so that no other step inherits them. */
static void serve(struct launcher *l, const int fds[4])
{
	int sock = fds[0];
	unsigned char tag;
	uint32_t n;
	/* Read here, blocking: the agent writes the request right after the
	 * Run message. */
	unsigned char *payload = read_frame(sock, &tag, &n);
	char *err = NULL;
	pid_t pid = -1;
	if (payload && tag == TAG_REQUEST) {
		struct proc p;
		const char *derr = decode_proc(payload, n, &p);
		if (derr)
			err = cat(derr, NULL);
		else
			pid = start(l, &p, fds + 1, &err);
		free_proc(&p);
	}
	free(payload);
	/* Our copies of the pipes go at once: the agent reads the output
	 * until every writer has closed it. */
	for (int i = 1; i < 4; i++)
		close(fds[i]);
	if (pid > 0) {
		/* If the agent gave up on the step, this fails and the
		 * process still gets reaped. */
		write_frame(sock, TAG_STARTED, NULL, 0);
		add_step(l, pid, sock);
		return;
	}
	if (err) {
		write_frame(sock, TAG_FAILED, err, strlen(err));
		free(err);
	}
	close(sock);
}

/* ---- the loop ---------------------------------------------------------- */

/* recv_run receives a Run message and its four descriptors (step socket,
 * stdin, stdout, stderr), close-on-exec. It returns 1, or 0 at end of
 * file; anything else on the control socket is fatal. */
static int recv_run(int fds[4])
{
	unsigned char b;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} oob;
	struct iovec iov = {&b, 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = oob.buf, .msg_controllen = sizeof oob.buf};
	ssize_t n;
	do
		n = recvmsg(CONTROL_FD, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		die_errno("read control socket", errno);
	if (n == 0 && m.msg_controllen == 0)
		return 0;
	int got = 0, all[64];
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && got < 64; i++)
			memcpy(&all[got++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (n != 1 || b != TAG_RUN || got != 4) {
		for (int i = 0; i < got; i++)
			close(all[i]);
		die("bad message on control socket");
	}
	memcpy(fds, all, sizeof(int[4]));
	return 1;
}

/* reap collects every child that has ended, steps and orphans alike, and
 * answers Exited with each step's wait status on its step socket. */
static void reap(struct launcher *l)
{
	for (;;) {
		int ws;
		pid_t pid = waitpid(-1, &ws, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0 && errno != ECHILD)
			die_errno("wait for children", errno);
		if (pid <= 0)
			return;
		for (size_t i = 0; i < l->nsteps; i++) {
			if (l->steps[i].pid != pid)
				continue;
			unsigned char st[4];
			put_u32(st, (uint32_t)ws);
			write_frame(l->steps[i].sock, TAG_EXITED, st, 4);
			close(l->steps[i].sock);
			l->steps[i] = l->steps[--l->nsteps];
			break;
		}
	}
}

/* on_signals handles what the signalfd has: SIGCHLD reaps, the others go
 * to every running step's process group. */
static void on_signals(struct launcher *l)
{
	struct signalfd_siginfo si[16];
	for (;;) {
		ssize_t n = read(l->sigfd, si, sizeof si);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* EAGAIN: all read */
		int chld = 0;
		for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
			if (si[i].ssi_signo == SIGCHLD) {
				chld = 1;
				continue;
			}
			for (size_t j = 0; j < l->nsteps; j++)
				kill(-l->steps[j].pid, si[i].ssi_signo);
		}
		if (chld)
			reap(l);
		if ((size_t)n < sizeof si)
			return;
	}
}

int main(void)
{
	struct launcher l = {0};

	/* A killed agent must not leave a job running: this process dies
	 * with the thread that started it, and with PID 1 the pid
	 * namespace. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		die_errno("set parent-death signal", errno);
	/* Orphans are reparented here even when this is not PID 1 (a
	 * privileged container shares the host's pid namespace). */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		die_errno("become child subreaper", errno);
	/* Steps must not inherit the control socket. */
	fcntl(CONTROL_FD, F_SETFD, FD_CLOEXEC);
	/* Steps cannot ptrace this process or read its memory or /proc
	 * files, even as root: it holds the control socket. (Without this
	 * it would become undumpable anyway at the first step run as another
	 * user, whose setuid marks the memory map shared until exec.
	 * Deterministic is better.) */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		die_errno("set not dumpable", errno);

	/* Before Ready there is no step to reap or to forward signals to,
	 * and no child that could leave an orphan; a termination signal
	 * ends the launcher, and so the container, which is what it asks
	 * for. */
	read_groups_denied();
	char *err = setup();
	if (err) {
		/* Tell the agent why; the container is of no use. */
		char *msg = cat("E", err, NULL);
		send_control(msg, strlen(msg));
		die(err);
	}
	unsigned char ready = TAG_READY;
	if (send_control(&ready, 1) < 0)
		die_errno("answer ready", errno);

	/* From here SIGCHLD and the forwarded signals are blocked and read
	 * from a signalfd, in the loop, between steps' starts: no handler
	 * interrupts a start. (A blocked signal also reaches PID 1 when it
	 * has no handler.) Blocked only now: the steps come after Ready. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaddset(&set, forwarded[i]);
	if (sigprocmask(SIG_BLOCK, &set, &l.initial_mask) < 0)
		die_errno("block signals", errno);
	l.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (l.sigfd < 0)
		die_errno("signalfd", errno);

	struct pollfd pfd[2] = {{.fd = CONTROL_FD, .events = POLLIN}, {.fd = l.sigfd, .events = POLLIN}};
	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die_errno("poll", errno);
		}
		/* Ended steps first: their Exited is due. */
		if (pfd[1].revents)
			on_signals(&l);
		if (pfd[0].revents) {
			int fds[4];
			if (!recv_run(fds))
				return 0; /* the agent closed the control socket */
			serve(&l, fds);
		}
	}
}
