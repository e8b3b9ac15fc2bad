/* hold_writer: linked into the test build of the daemon, it defines the
 * store's hook before each commit: while the file named by
 * $LLAMACHATD_HOLD_WRITER exists, the writer thread waits (and says so by
 * creating that name plus ".held"), so a test can hold a commit in progress
 * for as long as it likes and see what the loop does meanwhile. The daemon
 * that ships has no hook. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void store_hook_before_commit(const char *path);

void
store_hook_before_commit(const char *path)
{
	const char *hold = getenv("LLAMACHATD_HOLD_WRITER");
	char held[4096];
	bool said = false;

	(void)path;
	if (hold == NULL || hold[0] == '\0')
		return;
	snprintf(held, sizeof(held), "%s.held", hold);
	while (access(hold, F_OK) == 0) {
		if (!said) {
			int fd = open(held, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (fd >= 0)
				close(fd);
			said = true;
		}
		/* The writer thread's own pace, while a test holds it. */
		struct timespec pause = { 0, 5000000 };
		nanosleep(&pause, NULL);
	}
	if (said)
		unlink(held);
}
