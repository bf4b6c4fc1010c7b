/*
 * qemu-hook-client SOCKET ARG...  (stdin: the domain XML, as libvirt gives it to the hook)
 *
 * Hands one libvirt hook event to the resident qemu-hook (`qemu-hook serve`, see
 * src/cli/resident/protocol.ts for the protocol) and relays its answer: its stdout, its stderr, its
 * exit status. hooks/qemu runs it instead of starting Node when the socket is there.
 *
 * Exit 75 means nothing ran and nothing of stdin was read: no socket, not root's (or this user's),
 * nobody answering, or no worker taking the event within ACCEPT_MS. The front then runs the hook
 * itself. Once a worker has taken the event, every failure is the event's: exit 1 with one line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { RUN_IT_YOURSELF = 75 };
/* A worker is normally waiting; when all are busy, one starts (Node's start) within this. */
static const long long ACCEPT_MS = 5000;
/* Past the longest run the config allows (limits.hookSeconds ≤ 3600, the worker enforces it). */
static const long long ANSWER_MS = 3700 * 1000LL;
static const char PROTOCOL[] = "qemu-hook/1";

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events`: what it is ready for (revents, > 0), or 0 past the deadline, or -1. */
static int wait_fd(int fd, short events, long long deadline) {
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (r > 0) return p.revents;
        if (r < 0 && errno != EINTR) return -1;
    }
}

/* An answer, or the other end gone, while the request is still going out. */
enum { ANSWERED_EARLY = -2 };

/*
 * Sends all of it. While the socket is full it waits for room or for an answer: a worker that died
 * stops reading, and the server then answers for it; without looking for that answer the client
 * would wait for room that never comes (ANSWER_MS).
 */
static int send_all(int fd, const void *data, size_t n, long long deadline) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            int ready = wait_fd(fd, POLLOUT | POLLIN, deadline);
            if (ready <= 0) return -1;
            if (!(ready & POLLOUT) && (ready & (POLLIN | POLLHUP | POLLERR))) return ANSWERED_EARLY;
        } else {
            return errno == EPIPE || errno == ECONNRESET ? ANSWERED_EARLY : -1;
        }
    }
    return 0;
}

/* The request leaves in as few writes as fit: each write wakes the worker to parse what came. */
static char pending[65536];
static size_t pending_len;

static int flush_pending(int fd, long long deadline) {
    int r = send_all(fd, pending, pending_len, deadline);
    pending_len = 0;
    return r;
}

static int put(int fd, const void *data, size_t n, long long deadline) {
    if (pending_len + n > sizeof pending) {
        int r = flush_pending(fd, deadline);
        if (r < 0) return r;
        if (n > sizeof pending) return send_all(fd, data, n, deadline);
    }
    memcpy(pending + pending_len, data, n);
    pending_len += n;
    return 0;
}

static int send_item(int fd, const void *data, uint32_t n, long long deadline) {
    unsigned char head[4] = {n >> 24, n >> 16, n >> 8, n};
    int r = put(fd, head, 4, deadline);
    if (r < 0) return r;
    return n ? put(fd, data, n, deadline) : 0;
}

/* Reads exactly n bytes: 1, or 0 at EOF, -1 on error, -2 past the deadline. */
static int recv_all(int fd, void *data, size_t n, long long deadline) {
    char *p = data;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r == 0) {
            return 0;
        } else if (errno == EAGAIN || errno == EINTR) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w == 0) return -2;
            if (w < 0) return -1;
        } else {
            return -1;
        }
    }
    return 1;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The socket and its folder: root's or ours, the folder writable by no one else. */
static int trusted(const char *path, mode_t type, int *missing) {
    struct stat st;
    if (lstat(path, &st) < 0) {
        *missing = errno == ENOENT;
        return 0;
    }
    if ((st.st_mode & S_IFMT) != type) return 0;
    if (st.st_uid != 0 && st.st_uid != geteuid()) return 0;
    if (type == S_IFDIR && (st.st_mode & 022)) return 0;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: qemu-hook-client SOCKET ARG... (stdin: the domain XML)\n", stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *path = argv[1];
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) return RUN_IT_YOURSELF;
    strcpy(addr.sun_path, path);

    char dir[sizeof addr.sun_path];
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    if (!slash) return RUN_IT_YOURSELF;
    if (slash == dir) slash[1] = '\0'; else *slash = '\0';
    int missing = 0;
    if (!trusted(dir, S_IFDIR, &missing) || !trusted(path, S_IFSOCK, &missing)) {
        if (!missing)
            fprintf(stderr, "qemu-hook: not using %s: it or its folder is not root's, or others can write there; "
                            "the hook runs on its own (fix: chown root %s && chmod 700 %s)\n", path, dir, dir);
        return RUN_IT_YOURSELF;
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) return RUN_IT_YOURSELF;

    char taken = 0;
    if (recv_all(fd, &taken, 1, now_ms() + ACCEPT_MS) != 1 || taken != 'a') return RUN_IT_YOURSELF;

    /* A worker has the event: from here on it is the event's outcome, never the front's fallback. */
    long long deadline = now_ms() + ANSWER_MS;
    char count[16];
    snprintf(count, sizeof count, "%d", argc - 2);
    int sent = send_item(fd, PROTOCOL, sizeof PROTOCOL - 1, deadline);
    if (sent == 0) sent = send_item(fd, count, (uint32_t)strlen(count), deadline);
    for (int i = 2; sent == 0 && i < argc; i++) sent = send_item(fd, argv[i], (uint32_t)strlen(argv[i]), deadline);
    /* The environment libvirt gave the hook: the worker runs the event (and its scripts) in it. */
    int envc = 0;
    while (environ[envc]) envc++;
    if (envc > 9999) envc = 9999;
    snprintf(count, sizeof count, "%d", envc);
    if (sent == 0) sent = send_item(fd, count, (uint32_t)strlen(count), deadline);
    for (int i = 0; sent == 0 && i < envc; i++) sent = send_item(fd, environ[i], (uint32_t)strlen(environ[i]), deadline);
    static char buf[65536];
    while (sent == 0) {
        ssize_t r = read(0, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* EOF, or no stdin at all: the event without XML */
        sent = send_item(fd, buf, (uint32_t)r, deadline);
    }
    if (sent == 0) sent = send_item(fd, "", 0, deadline);
    if (sent == 0) sent = flush_pending(fd, deadline);
    /* Answered before it had all of the request (its worker died): the answer below says so. */
    if (sent < 0 && sent != ANSWERED_EARLY) {
        fputs("qemu-hook: the resident hook (qemu-hook.service) dropped the event before it was handed over; nothing ran\n", stderr);
        return 1;
    }
    /* No shutdown(SHUT_WR): the empty item ends the request, and a half-closed socket would make
     * Node close the worker's side too before it answers. */

    for (;;) {
        unsigned char head[5];
        int r = recv_all(fd, head, 5, deadline);
        if (r != 1) {
            fputs(r == -2 ? "qemu-hook: no answer from the resident hook (qemu-hook.service) in time\n"
                          : "qemu-hook: the resident hook (qemu-hook.service) ended without an answer; see journalctl -u qemu-hook\n",
                  stderr);
            return 1;
        }
        uint32_t n = (uint32_t)head[1] << 24 | (uint32_t)head[2] << 16 | (uint32_t)head[3] << 8 | head[4];
        if (head[0] == 'x') {
            unsigned char status = 1;
            if (n != 1 || recv_all(fd, &status, 1, deadline) != 1) status = 1;
            return status == RUN_IT_YOURSELF ? 1 : status;
        }
        while (n > 0) {
            size_t part = n < sizeof buf ? n : sizeof buf;
            if (recv_all(fd, buf, part, deadline) != 1) {
                fputs("qemu-hook: the resident hook's answer was cut off\n", stderr);
                return 1;
            }
            /* A reader that went away is libvirt's business; the status still counts. */
            (void)write_all(head[0] == 'o' ? 1 : 2, buf, part);
            n -= (uint32_t)part;
        }
    }
}
