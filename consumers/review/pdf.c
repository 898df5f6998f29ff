/* keng-replay --pdf: runs headless Chromium on review.html and waits for it, with a deadline;
 * it never leaves Chromium or its helpers running past it. */
#include "pdf.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "timeutil.h"

static const char *const browser_names[] = {"chromium", "chromium-browser", "google-chrome"};

int keng_pdf_find_chromium(char *path, size_t size, char *errstr, size_t errstr_size)
{
    const char *env = getenv("KENG_CHROMIUM");
    const char *dirs = getenv("PATH");

    if (env && *env) {
        if (access(env, X_OK) != 0) {
            snprintf(errstr, errstr_size, "KENG_CHROMIUM=%s: %s", env, strerror(errno));
            return -1;
        }
        snprintf(path, size, "%s", env);
        return 0;
    }
    for (size_t n = 0; n < sizeof(browser_names) / sizeof(browser_names[0]); n++) {
        for (const char *dir = dirs ? dirs : "/usr/bin:/bin"; *dir;) {
            size_t len = strcspn(dir, ":");
            snprintf(path, size, "%.*s/%s", (int)len, len ? dir : ".", browser_names[n]);
            if (access(path, X_OK) == 0)
                return 0;
            dir += len + (dir[len] == ':');
        }
    }
    snprintf(errstr, errstr_size,
             "--pdf needs headless Chromium and none was found on PATH (chromium, "
             "chromium-browser, google-chrome); install Debian's package chromium, or set "
             "KENG_CHROMIUM to the browser's path");
    return -1;
}

/* file:// URL of an absolute path, percent-encoding what a URL cannot carry as is. */
static void file_url(const char *abs, char *url, size_t size)
{
    size_t o = (size_t)snprintf(url, size, "file://");

    for (const unsigned char *p = (const unsigned char *)abs; *p && o + 4 < size; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/-._~", *p))
            url[o++] = (char)*p;
        else
            o += (size_t)snprintf(url + o, size - o, "%%%02X", *p);
    }
    url[o] = '\0';
}

/* The browser's last line of output that is not about D-Bus (which headless Chromium misses
 * on a server and always complains of), to say why it failed. */
static void last_words(const char *log_path, char *out, size_t size)
{
    char line[512];
    FILE *f = fopen(log_path, "r");

    out[0] = '\0';
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] && !strstr(line, "dbus") && !strstr(line, "DBus"))
            snprintf(out, size, "%.*s", (int)size - 1, line);
    }
    fclose(f);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Starts the browser printing `url` to the file in pdf_flag, in a process group of its own
 * (so that a deadline can end the browser and its helpers), its output going to log_path.
 * Returns its pid, or -1 with errstr filled. */
static pid_t start_browser(const char *chromium, char *profile_flag, char *pdf_flag, char *url,
                           const char *log_path, char *errstr, size_t errstr_size)
{
    char *argv[20];
    int argc = 0;

    argv[argc++] = (char *)chromium;
    argv[argc++] = "--headless";
    /* Chromium's sandbox stays on: it is what stands between a page and the machine. Chromium
     * refuses to start with it as root, and only then is it turned off. */
    if (geteuid() == 0)
        argv[argc++] = "--no-sandbox";
    argv[argc++] = "--disable-gpu";
    argv[argc++] = "--disable-dev-shm-usage";
    argv[argc++] = "--no-first-run";
    argv[argc++] = "--disable-background-networking";
    argv[argc++] = "--disable-component-update";
    argv[argc++] = "--disable-sync";
    argv[argc++] = "--disable-extensions";
    argv[argc++] = "--no-pdf-header-footer";
    argv[argc++] = "--print-to-pdf-no-header";
    argv[argc++] = profile_flag;
    argv[argc++] = pdf_flag;
    argv[argc++] = url;
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errstr, errstr_size, "cannot start %s: %s", chromium, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDONLY);
        int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (devnull >= 0 && log_fd >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(log_fd, STDOUT_FILENO);
            dup2(log_fd, STDERR_FILENO);
        }
        execv(chromium, argv);
        dprintf(STDERR_FILENO, "cannot run %s: %s\n", chromium, strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

/* Waits for the browser to exit, its status in *status. At the deadline or on *stop it kills
 * the browser's process group, sets *pid to -1 and returns -1 with errstr filled. */
static int wait_browser(pid_t *pid, int *status, const char *chromium, const char *pdf_path,
                        int timeout_s, const volatile sig_atomic_t *stop, char *errstr,
                        size_t errstr_size)
{
    int64_t deadline = keng_monotonic_ms() + (int64_t)timeout_s * 1000;
    for (;;) {
        pid_t done = waitpid(*pid, status, WNOHANG);
        if (done == *pid)
            return 0;
        if (done < 0 && errno != EINTR) {
            snprintf(errstr, errstr_size, "waiting for %s: %s", chromium, strerror(errno));
            return -1;
        }
        if (keng_monotonic_ms() >= deadline || (stop && *stop)) {
            kill(-*pid, SIGKILL);
            waitpid(*pid, status, 0);
            *pid = -1;
            if (stop && *stop)
                snprintf(errstr, errstr_size, "interrupted while %s printed %s", chromium,
                         pdf_path);
            else
                snprintf(errstr, errstr_size, "%s did not print %s within %d s; it was stopped",
                         chromium, pdf_path, timeout_s);
            return -1;
        }
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
}

int keng_pdf_print(const char *chromium, const char *html_path, const char *pdf_path, int timeout_s,
                   const volatile sig_atomic_t *stop, char *errstr, size_t errstr_size)
{
    char abs[PATH_MAX], url[3 * PATH_MAX + 8], profile[PATH_MAX], part[2 * PATH_MAX + 16],
        profile_flag[PATH_MAX + 20], pdf_flag[sizeof(part) + 20], cwd[PATH_MAX],
        log_path[sizeof(profile) + 32], words[256];
    const char *tmp = getenv("TMPDIR");
    pid_t pid = -1;
    int status = 0, rc = -1;

    profile[0] = part[0] = '\0';
    if (!realpath(html_path, abs)) {
        snprintf(errstr, errstr_size, "%s: %s", html_path, strerror(errno));
        return -1;
    }
    file_url(abs, url, sizeof(url));
    /* A fresh profile each time: a browser already running with the user's profile would
     * take the job over and return at once. */
    snprintf(profile, sizeof(profile), "%s/keng-replay-chromium-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(profile)) {
        snprintf(errstr, errstr_size, "%s: %s", profile, strerror(errno));
        profile[0] = '\0';
        goto out;
    }
    /* Absolute, since the browser may resolve a relative path against another directory. */
    int n = pdf_path[0] != '/' && getcwd(cwd, sizeof(cwd))
                ? snprintf(part, sizeof(part), "%s/%s.part", cwd, pdf_path)
                : snprintf(part, sizeof(part), "%s.part", pdf_path);
    if (n < 0 || (size_t)n >= sizeof(part)) {
        snprintf(errstr, errstr_size, "%s: the path is too long", pdf_path);
        part[0] = '\0';
        goto out;
    }
    snprintf(profile_flag, sizeof(profile_flag), "--user-data-dir=%s", profile);
    snprintf(log_path, sizeof(log_path), "%s/keng-chromium.log", profile);
    snprintf(pdf_flag, sizeof(pdf_flag), "--print-to-pdf=%s", part);
    unlink(part);

    pid = start_browser(chromium, profile_flag, pdf_flag, url, log_path, errstr, errstr_size);
    if (pid < 0)
        goto out;
    if (wait_browser(&pid, &status, chromium, pdf_path, timeout_s, stop, errstr, errstr_size) != 0)
        goto out;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        last_words(log_path, words, sizeof(words));
        snprintf(errstr, errstr_size, "%s failed to print %s (%s %d)%s%s", chromium, abs,
                 WIFEXITED(status) ? "exit status" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), words[0] ? ": " : "",
                 words);
        goto out;
    }
    struct stat st;
    if (stat(part, &st) != 0 || st.st_size == 0) {
        snprintf(errstr, errstr_size, "%s exited without writing %s", chromium, pdf_path);
        goto out;
    }
    if (rename(part, pdf_path) != 0) {
        snprintf(errstr, errstr_size, "%s: %s", pdf_path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (pid > 0)
        kill(-pid, SIGKILL); /* helpers that outlived the browser */
    if (rc != 0 && part[0])
        unlink(part);
    if (profile[0])
        nftw(profile, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
