/* cli: the command-line front. Subcommands are rows of one table (name,
 * handler, one-line help); each handler calls modules and is the only
 * place that prints for the user. */
#ifndef LEADSYNC_CLI_H
#define LEADSYNC_CLI_H

int cli_main(int argc, char **argv);

#endif
