/* A guest-side inotify watcher for the mount tests and benchmark (the
 * image's busybox has no inotifyd): watches each DIR given and prints one
 * line per event, "<unix ms> <EVENT,...> <dir>/<name>", flushed at once.
 * Built static on the host and copied into the guest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

static const struct {
  unsigned mask;
  const char *name;
} kNames[] = {{IN_ACCESS, "ACCESS"},     {IN_MODIFY, "MODIFY"},     {IN_ATTRIB, "ATTRIB"},
              {IN_CLOSE_WRITE, "CLOSE_WRITE"}, {IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"},
              {IN_OPEN, "OPEN"},         {IN_MOVED_FROM, "MOVED_FROM"}, {IN_MOVED_TO, "MOVED_TO"},
              {IN_CREATE, "CREATE"},     {IN_DELETE, "DELETE"},     {IN_DELETE_SELF, "DELETE_SELF"},
              {IN_ISDIR, "ISDIR"}};

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: inotify-watch DIR...\n");
    return 2;
  }
  int fd = inotify_init1(IN_CLOEXEC);
  if (fd < 0) return perror("inotify_init1"), 1;
  char **dirs = calloc((size_t)argc * 4, sizeof(char *));
  for (int i = 1; i < argc; i++) {
    int wd = inotify_add_watch(fd, argv[i], IN_ALL_EVENTS & ~(IN_ACCESS | IN_CLOSE_NOWRITE | IN_OPEN));
    if (wd < 0) return perror(argv[i]), 1;
    if (wd < argc * 4) dirs[wd] = argv[i];
  }
  printf("watching\n");
  fflush(stdout);
  char buf[64 * 1024] __attribute__((aligned(8)));
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *e = (struct inotify_event *)p;
      char what[256] = "";
      for (size_t k = 0; k < sizeof kNames / sizeof kNames[0]; k++) {
        if (e->mask & kNames[k].mask) {
          if (what[0]) strcat(what, ",");
          strcat(what, kNames[k].name);
        }
      }
      const char *dir = e->wd >= 0 && e->wd < argc * 4 && dirs[e->wd] ? dirs[e->wd] : "?";
      printf("%lld %s %s/%s\n", ms, what, dir, e->len ? e->name : "");
      p += sizeof(struct inotify_event) + e->len;
    }
    fflush(stdout);
  }
}
