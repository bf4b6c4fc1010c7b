/* A stand-in for a compositor or a GPU daemon in the hand-over lab guest: opens the device nodes
 * it is given (as a display server holds /dev/dri/card0 and /dev/fb0), optionally puts a VT in
 * KD_GRAPHICS as a compositor does, and sleeps until SIGTERM, when it restores the VT and exits.
 *
 *   holder [--vt /dev/ttyN] NODE...      exit 1 if a node cannot be opened (the unit then fails)
 *
 * Built statically by lab.sh with the host's gcc; runs only inside the lab guest. */
#include <fcntl.h>
#include <linux/kd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static volatile sig_atomic_t done;
static void on_term(int sig) { (void)sig; done = 1; }

int main(int argc, char **argv) {
    int vt = -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--vt") == 0 && i + 1 < argc) {
            vt = open(argv[++i], O_RDWR | O_NOCTTY);
            if (vt < 0 || ioctl(vt, KDSETMODE, KD_GRAPHICS) < 0) {
                perror(argv[i]);
                return 1;
            }
            continue;
        }
        if (open(argv[i], O_RDWR | O_CLOEXEC) < 0) {
            perror(argv[i]);
            return 1;
        }
    }
    printf("holder %d: holding", (int)getpid());
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    fflush(stdout);
    while (!done) pause();
    if (vt >= 0) ioctl(vt, KDSETMODE, KD_TEXT);
    return 0;
}
