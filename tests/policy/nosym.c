/* SPDX-License-Identifier: MIT */
/* Test fixture: a shared object that exports no tierd_policy symbol. */
int not_a_policy(void);
int not_a_policy(void)
{
	return 42;
}
