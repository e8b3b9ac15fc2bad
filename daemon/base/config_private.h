/* config_private: what the two files of the config loader share
 * (config.c: the file, its plain settings and the checks of the whole;
 * config_lists.c: its lists). Nothing outside them includes it. */
#ifndef LLAMACHATD_CONFIG_PRIVATE_H
#define LLAMACHATD_CONFIG_PRIVATE_H

#include <libconfig.h>

#include "base/config.h"

/* Adds "file:line: setting: reason" for setting to errors. */
void config_setting_error(struct config_errors *errors, const char *path, const config_setting_t *setting,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Each reads one list setting s into c, adding what is wrong to errors. */
void config_read_listen(
    struct config *c, const config_setting_t *s, char **out, size_t *count, struct config_errors *errors);
void config_read_names(
    struct config *c, const config_setting_t *s, struct config_names *out, struct config_errors *errors);
void config_read_routes(struct config *c, const config_setting_t *s, struct config_errors *errors);
void config_read_clients(struct config *c, const config_setting_t *s, struct config_errors *errors);
void config_read_project_keys(struct config *c, const config_setting_t *s, struct config_errors *errors);

void config_free_routes(struct config *c);
void config_free_clients(struct config *c);

#endif
