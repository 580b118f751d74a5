/* Exec storm generator for bench/exec_storm.py.
 *
 * usage: storm WORKERS SECONDS
 * Waits for one line on stdin (the go signal, so the bench can first make this process a watched
 * session root), then forks WORKERS workers that each fork+exec `/bin/true <CLOCK_REALTIME ns>` as fast
 * as they can for SECONDS, counting execs whose child exited 0. Prints one JSON object on stdout.
 * The workers themselves never exec, so every exec below this process is one /bin/true. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s WORKERS SECONDS\n", argv[0]);
        return 2;
    }
    int workers = atoi(argv[1]);
    double seconds = atof(argv[2]);
    if (workers < 1 || workers > 256 || seconds <= 0)
        return 2;
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return 3;
    /* per worker: execs ok, execs failed */
    unsigned long long *counts =
        mmap(NULL, sizeof(unsigned long long) * 2 * workers, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (counts == MAP_FAILED)
        return 4;
    memset(counts, 0, sizeof(unsigned long long) * 2 * workers);
    fflush(stdout);
    double t0 = mono();
    double deadline = t0 + seconds;
    pid_t pids[256];
    for (int w = 0; w < workers; w++) {
        pid_t p = fork();
        pids[w] = p;
        if (p < 0)
            return 5;
        if (p == 0) {
            char ns[32];
            char *cargv[] = {"/bin/true", ns, NULL};
            char *cenv[] = {NULL};
            unsigned long long ok = 0, bad = 0;
            while (mono() < deadline) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                snprintf(ns, sizeof(ns), "%lld", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
                pid_t c = fork();
                if (c == 0) {
                    execve("/bin/true", cargv, cenv);
                    _exit(127);
                }
                if (c < 0) {
                    bad++;
                    continue;
                }
                int st = 0;
                while (waitpid(c, &st, 0) < 0)
                    ;
                if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
                    ok++;
                else
                    bad++;
            }
            counts[2 * w] = ok;
            counts[2 * w + 1] = bad;
            _exit(0);
        }
    }
    for (int w = 0; w < workers; w++)
        wait(NULL);
    double elapsed = mono() - t0;
    unsigned long long ok = 0, bad = 0;
    printf("{\"workers\": %d, \"elapsed\": %.6f, \"per_worker\": [", workers, elapsed);
    for (int w = 0; w < workers; w++) {
        ok += counts[2 * w];
        bad += counts[2 * w + 1];
        printf("%s%llu", w ? ", " : "", counts[2 * w]);
    }
    printf("], \"worker_pids\": [");
    for (int w = 0; w < workers; w++)
        printf("%s%d", w ? ", " : "", (int)pids[w]);
    printf("], \"execs\": %llu, \"failed\": %llu}\n", ok, bad);
    return 0;
}
