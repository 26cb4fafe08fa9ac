// bench/conn_load.c — open and close TCP connections at a steady rate on
// loopback (bench/exporter_vs_node.sh; bench only).
//
// Usage: conn_load PORT RATE SECS [WORKERS]
// A listener on 127.0.0.1:PORT, accepted and closed by one acceptor thread
// per two workers (SO_REUSEPORT sockets), and WORKERS client threads, each
// connecting RATE/WORKERS times a second for SECS seconds (blocking connect,
// then close: NEW and UPDATE events now, DESTROY when the entry expires;
// the client closes first, so its socket waits in TIME_WAIT and loopback's
// tcp_tw_reuse=2 reuses the port after a second). Run it inside the bench
// namespace: every connection is a new tracked entry. Prints connections
// made, failures and the achieved rate over SECS. Bounded: SECS <= 120; the
// process exits at SECS + 10 s whatever happens (alarm).
// Build: cc -O2 -pthread -o conn_load bench/conn_load.c
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int port;
static double rate, secs;
static int workers;
static struct timespec t0;

struct res { long made, failed; double wall; };

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9;
}

static int listener(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(s, (void *)&a, sizeof a) || listen(s, 4096)) {
        perror("bind/listen");
        exit(1);
    }
    return s;
}

static void *acceptor(void *arg) {
    int ls = (int)(long)arg;
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c >= 0) close(c);
    }
    return NULL;
}

static void *client(void *arg) {
    struct res *r = arg;
    double share = rate / workers;
    long total = (long)(share * secs);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 1};
    while (r->made < total) {
        double t = now_s();
        if (t > secs) break;
        double due = r->made / share;
        if (due > t) {
            double w = due - t;
            struct timespec ts = {(time_t)w, (long)((w - (time_t)w) * 1e9)};
            nanosleep(&ts, NULL);
        }
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) { r->failed++; r->made++; continue; }
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(s, (void *)&a, sizeof a)) r->failed++;
        close(s);
        r->made++;
    }
    r->wall = now_s();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: conn_load PORT RATE SECS [WORKERS]\n");
        return 2;
    }
    port = atoi(argv[1]);
    rate = atof(argv[2]);
    secs = atof(argv[3]);
    if (secs > 120) secs = 120;
    workers = argc > 4 ? atoi(argv[4]) : 2;
    if (workers < 1 || rate <= 0 || secs <= 0) return 2;
    alarm((unsigned)secs + 10);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int nacc = workers / 2 > 0 ? workers / 2 : 1;
    pthread_t th;
    for (int i = 0; i < nacc; i++)
        pthread_create(&th, NULL, acceptor, (void *)(long)listener());
    struct res *rs = calloc(workers, sizeof *rs);
    pthread_t *ct = calloc(workers, sizeof *ct);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < workers; i++) pthread_create(&ct[i], NULL, client, &rs[i]);
    long made = 0, failed = 0;
    double wall = 0;
    for (int i = 0; i < workers; i++) {
        pthread_join(ct[i], NULL);
        made += rs[i].made;
        failed += rs[i].failed;
        if (rs[i].wall > wall) wall = rs[i].wall;
    }
    printf("connections=%ld failed=%ld wall_s=%.2f rate=%.0f/s asked=%.0f/s workers=%d\n",
           made, failed, wall, made / wall, rate, workers);
    return 0;
}
