/* dsr1 devices: the devices a model can offload to (-ngl, --device). */
#include <stdio.h>

#include "cli.h"

int dsr1_cli_devices(const dsr1_cli_command *cmd, dsr1_cli_opts *o)
{
    (void)o;
    int32_t n = dsr1_device_count();
    if (n == 0) {
        dsr1_device_props p = {sizeof p, "", "", 0, 0};
        dsr1_device_info(0, &p);
        printf("no devices to offload to: %s\n", dsr1_last_error());
        return 0;
    }
    printf("%-5s %-8s %-4s %10s  %s\n", "index", "backend", "type", "memory", "name");
    for (int32_t i = 0; i < n; i++) {
        dsr1_device_props p = {sizeof p, "", "", 0, 0};
        dsr1_status st = dsr1_device_info(i, &p);
        if (st)
            return dsr1_cli_fail(cmd->name, st);
        printf("%-5d %-8s %-4s %7.0f MiB  %s\n", (int)i, p.backend, p.is_cpu ? "CPU" : "GPU",
               (double)p.memory / 1048576.0, p.name);
    }
    printf("(-ngl offloads to the first GPU; a CPU-type device only when it is the only device or is chosen:\n"
           " --device INDEX|NAME or DSR1_DEVICE)\n");
    return 0;
}
