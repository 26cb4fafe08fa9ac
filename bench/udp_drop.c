// bench/udp_drop.c — send UDP datagrams to a closed port at a fixed rate
// for a fixed time (each one a NO_SOCKET drop on the receiving side), to
// measure what counting drops costs (bench/drops_cost.sh). Loopback only:
// the destination must be 127.0.0.1 (run it inside a namespace you made).
// Build: cc -O2 -o udp_drop bench/udp_drop.c
// Usage: udp_drop RATE SECS [PORT]   prints the datagrams sent and the rate.
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s RATE SECS [PORT]\n", argv[0]);
        return 2;
    }
    long rate = atol(argv[1]);
    double secs = atof(argv[2]);
    int port = argc > 3 ? atoi(argv[3]) : 9;
    if (rate <= 0 || rate > 10000000 || secs <= 0 || secs > 600) {
        fprintf(stderr, "RATE 1..10000000, SECS 0..600\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    double t0 = now(), end = t0 + secs;
    long sent = 0;
    // Paced in 1 ms slices: send what the rate allows so far, then sleep.
    for (double t = t0; t < end; t = now()) {
        long due = (long)((t - t0) * rate);
        while (sent < due) {
            sendto(s, "x", 1, 0, (struct sockaddr *)&a, sizeof a);
            sent++;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    double took = now() - t0;
    printf("%ld %.0f\n", sent, sent / took);
    return 0;
}
