/* The dsr1 command-line tool: one file per subcommand. */
#ifndef DSR1_CLI_H
#define DSR1_CLI_H

#include "dsr1.h"

/* Each subcommand gets argv[0] = its own name and returns the exit code. */
int dsr1_cli_info(int argc, char **argv);
int dsr1_cli_eval(int argc, char **argv);
int dsr1_cli_tokenize(int argc, char **argv);
int dsr1_cli_detokenize(int argc, char **argv);
int dsr1_cli_run(int argc, char **argv);
int dsr1_cli_chat(int argc, char **argv);

/* Shared helpers (cli_util.c). */
/* Load a model, printing the library's message on failure (NULL then). */
dsr1_model *dsr1_cli_load(const char *path, int vocab_only, int verbose);
/* Print "dsr1 <cmd>: <message>" for a failed call and return 1. */
int dsr1_cli_fail(const char *cmd, dsr1_status st);
/* Parse a decimal integer argument; exits with a message when invalid. */
long dsr1_cli_parse_long(const char *cmd, const char *flag, const char *value, long lo, long hi);
double dsr1_cli_parse_double(const char *cmd, const char *flag, const char *value, double lo, double hi);

#endif
