/* wsimage.h — a named workspace's size limit: a sparse ext4 image in the
 * workspace's directory, loop-mounted on its data/ on the host.
 *
 * One mount serves every user of the workspace (two loop devices over one
 * image would corrupt it): made at create, made again by the first user
 * after a reboot, undone at delete. Each function takes the workspace's
 * directory (an O_DIRECTORY descriptor) and reaches "image" and "data"
 * in it without following a symlink. */
#ifndef AEGIS_COMMON_WSIMAGE_H
#define AEGIS_COMMON_WSIMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include <aegis/aegis.h>

/* May this process attach loop devices and mount (CAP_SYS_ADMIN)? */
bool wsimage_privileged(void);
/* A new sparse image of bytes, formatted ext4 with its root owned by us. */
int wsimage_make(int wsdir, uint64_t bytes, struct aegis_error *err);
/* Attach the image to a free loop device and mount it on data/ (nosuid,
 * nodev). fresh: a new file system, whose lost+found is removed so the
 * workspace starts empty. */
int wsimage_mount(int wsdir, bool fresh, struct aegis_error *err);
/* 1: data/ is the image's mount; 0: nothing is mounted there; -1 (err):
 * something else is, or data/ is not a directory. */
int wsimage_mounted(int wsdir, struct aegis_error *err);
/* Unmount data/ (the loop device clears itself); EBUSY when something on
 * the host still has files open in it. */
int wsimage_unmount(int wsdir, struct aegis_error *err);

#endif
