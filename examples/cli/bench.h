/* Helpers of `dsr1 bench` (bench_membw.c). */
#ifndef DSR1_CLI_BENCH_H
#define DSR1_CLI_BENCH_H

#define DSR1_CLI_MEMBW_MAX_THREADS 256

/* The machine's memory read bandwidth in bytes per second with n_threads
 * (1..DSR1_CLI_MEMBW_MAX_THREADS) reading at once, best of a few passes
 * over 1 GiB; negative when it cannot be measured (no memory, no threads). */
double dsr1_cli_membw(int n_threads);

#endif
