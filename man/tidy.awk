# Drops the paragraph macros scdoc (1.11) emits where they do nothing: right after .SH/.SS, right
# before .SH/.SS, and before the .RE that closes an indented block (moved after it instead, where
# it separates the block from what follows). mandoc -T lint warns about each ("skipping paragraph
# macro"), which would drown real warnings in make check-man.
/^\.P$/ {
	if (prev !~ /^\.S[HS] /)
		held = 1
	prev = $0
	next
}
{
	if (held) {
		if ($0 ~ /^\.RE/) {
			print
			prev = $0
			next
		}
		if ($0 !~ /^\.S[HS] /)
			print ".P"
		held = 0
	}
	print
	prev = $0
}
END {
	if (held)
		print ".P"
}
