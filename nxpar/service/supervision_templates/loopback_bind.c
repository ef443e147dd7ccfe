/* nxpar: keep MPICH hydra's control port on loopback for a job that runs on one host.
 *
 * MPICH 4.0's hydra (mpiexec.hydra and hydra_pmi_proxy) binds its control port on every interface
 * (INADDR_ANY) and has no option to change that. Preloaded into those two programs only, this turns
 * their bind() to "any address" into a bind to the loopback address; every other program (the ranks:
 * the Tango server of rank 0 must stay reachable from BLISS) is left alone, even though it inherits
 * LD_PRELOAD. Built by launch/setup.sh (or by hand: cc -shared -fPIC -O2 -o libnxpar_loopback_bind.so
 * loopback_bind.c -ldl) and named by `nxpar-supervision` and launch/stack.py for one-host jobs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int is_hydra(void)
{
    static int known = -1;
    if (known < 0) {
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        const char *base = strrchr(exe, '/');
        base = base ? base + 1 : exe;
        known = strncmp(base, "mpiexec", 7) == 0 || strncmp(base, "hydra_pmi_proxy", 15) == 0;
    }
    return known;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind)
        real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && is_hydra()) {
        if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
            struct sockaddr_in in4;
            memcpy(&in4, addr, sizeof in4);
            if (in4.sin_addr.s_addr == htonl(INADDR_ANY)) {
                in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                return real_bind(fd, (const struct sockaddr *)&in4, sizeof in4);
            }
        } else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
            struct sockaddr_in6 in6;
            memcpy(&in6, addr, sizeof in6);
            if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) {
                in6.sin6_addr = in6addr_loopback;
                return real_bind(fd, (const struct sockaddr *)&in6, sizeof in6);
            }
        }
    }
    return real_bind(fd, addr, len);
}
