/* SPDX-License-Identifier: MIT */
/*
 * errtext(): an errno's description for messages written by libtier and the shim.
 *
 * Not strerror(3): glibc translates it through gettext, which read-locks the locale and gettext
 * state, and fork(2) resets neither lock. When libtier's control thread is inside strerror while
 * the application forks, the child inherits those locks held by a thread that does not exist
 * there, and its first setlocale(3) or bind_textdomain_codeset(3) blocks forever. PostgreSQL's
 * children do both; a stuck one stops the server from shutting down. strerrordesc_np(3) reads the
 * untranslated table and takes no lock. tests/kernel/test_preload.c checks that neither library
 * imports strerror or its relatives.
 */
#ifndef TIERD_ERRTEXT_H
#define TIERD_ERRTEXT_H

#include <string.h>

static inline const char *errtext(int err)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	const char *s = strerrordesc_np(err);

	return s ? s : "unknown error";
#else
	return strerror(err); /* other C libraries: no translation, no lock */
#endif
}

#endif
