/* Printing a report page to PDF with headless Chromium (Debian's chromium package), in a
 * process of its own that is bounded in time; nothing here renders the page itself.
 *
 * Thread: blocks the caller until Chromium ends; keeps no state. */
#ifndef KENG_PDF_H
#define KENG_PDF_H

#include <signal.h>
#include <stddef.h>

/* Finds the browser: $KENG_CHROMIUM when set (it must be executable), else the first of
 * chromium, chromium-browser, google-chrome on $PATH. Returns 0 with its path in path, or -1
 * with errstr saying what is missing and how to install it. */
int keng_pdf_find_chromium(char *path, size_t size, char *errstr, size_t errstr_size);

/* Prints html_path to pdf_path with the browser at chromium (A4, as the page's print
 * stylesheet asks, no header or footer), giving it timeout_s seconds before it is killed
 * with all its processes; the same when *stop becomes non-zero (a signal handler's flag; stop
 * may be NULL). The PDF appears under pdf_path only once complete. Returns 0, or -1 with
 * errstr naming what failed. */
int keng_pdf_print(const char *chromium, const char *html_path, const char *pdf_path, int timeout_s,
                   const volatile sig_atomic_t *stop, char *errstr, size_t errstr_size);

#endif
