/* File system figures from inside a guest, for bench/mounts.sh: sequential
 * write and read of one file, and the small-file workload (create, stat and
 * delete N files of 1 KiB in one directory). Static, copied into the guest.
 *
 *   fsbench DIR [MIB] [FILES]
 *
 * Prints "key value" lines: write_mib_s, read_mib_s, create_s, stat_s,
 * delete_s, small_total_s. The read is of a file the guest has not cached
 * (written, then the guest's page cache dropped). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void drop_caches(void) {
  sync();
  int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
  if (fd >= 0) {
    if (write(fd, "3", 1) != 1) perror("drop_caches");
    close(fd);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fsbench DIR [MIB] [FILES]\n");
    return 2;
  }
  const char *dir = argv[1];
  const long mib = argc > 2 ? atol(argv[2]) : 128;
  const long files = argc > 3 ? atol(argv[3]) : 5000;
  char path[4096];
  static char block[1 << 20];
  memset(block, 'x', sizeof block);

  snprintf(path, sizeof path, "%s/fsbench.seq", dir);
  double t = now();
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die(path);
  for (long i = 0; i < mib; i++) {
    if (write(fd, block, sizeof block) != (ssize_t)sizeof block) die("write");
  }
  if (fsync(fd) != 0) die("fsync");
  close(fd);
  printf("write_mib_s %.1f\n", mib / (now() - t));
  drop_caches();
  t = now();
  fd = open(path, O_RDONLY);
  if (fd < 0) die(path);
  ssize_t got;
  long total = 0;
  while ((got = read(fd, block, sizeof block)) > 0) total += got;
  close(fd);
  printf("read_mib_s %.1f\n", total / 1048576.0 / (now() - t));
  unlink(path);

  snprintf(path, sizeof path, "%s/fsbench.d", dir);
  if (mkdir(path, 0755) != 0) die(path);
  char name[4200];
  const double t0 = now();
  for (long i = 0; i < files; i++) {
    snprintf(name, sizeof name, "%s/f%ld", path, i);
    fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) die(name);
    if (write(fd, block, 1024) != 1024) die("write");
    close(fd);
  }
  const double t1 = now();
  struct stat st;
  for (long i = 0; i < files; i++) {
    snprintf(name, sizeof name, "%s/f%ld", path, i);
    if (stat(name, &st) != 0) die(name);
  }
  const double t2 = now();
  for (long i = 0; i < files; i++) {
    snprintf(name, sizeof name, "%s/f%ld", path, i);
    if (unlink(name) != 0) die(name);
  }
  rmdir(path);
  const double t3 = now();
  printf("create_s %.3f\nstat_s %.3f\ndelete_s %.3f\nsmall_total_s %.3f\n", t1 - t0, t2 - t1,
         t3 - t2, t3 - t0);
  return 0;
}
