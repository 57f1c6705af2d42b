/* main: leadsync's entry point; everything else is in cli.c and the modules. */
#include "cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
