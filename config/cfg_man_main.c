/* cfg_man_main: prints the sluice.ini(5) page (cfg_write_man); run by the build, not installed. */
#include "config/cfg.h"

int main(void)
{
    cfg_write_man(stdout);
    return fflush(stdout) == 0 ? 0 : 1;
}
