#!/bin/sh
# check-releasing.sh checks that RELEASING.md's module table lists every
# directory of the repository that holds a go.mod, as `dir/` (`/` for the
# root), and in dependency order: each module's row comes after the rows of
# the modules of this repository that its go.mod requires.
# Run from the repository root (make lint does).
set -eu

doc=RELEASING.md
prefix=github.com/eventbus-go/eventbus
status=0

# row DIR prints the line number of the first table row naming `DIR`.
row() {
	grep -n "^|.*| \`$1\` |" "$doc" | head -n 1 | cut -d: -f1
}

for mod in $(find . -name go.mod -not -path './.git/*' | sort); do
	dir=${mod#./}
	dir=${dir%go.mod}
	[ -n "$dir" ] || dir=/
	line=$(row "$dir")
	if [ -z "$line" ]; then
		echo "$doc: no row for the module in \`$dir\` ($mod)"
		status=1
		continue
	fi
	# The modules of this repository it requires, as directories.
	# sed prints "/" for the core and "/natsbus/" for natsbus.
	for req in $(sed -n "s#^[[:space:]]*\(require[[:space:]]\{1,\}\)\{0,1\}$prefix\(/[^[:space:]]*\)\{0,1\}[[:space:]]\{1,\}v.*#\2/#p" "$mod"); do
		rdir=$req
		[ "$rdir" = / ] || rdir=${rdir#/}
		rline=$(row "$rdir")
		if [ -n "$rline" ] && [ "$rline" -gt "$line" ]; then
			echo "$doc: \`$dir\` requires \`$rdir\`, which comes after it in the table"
			status=1
		fi
	done
done
if [ "$status" -ne 0 ]; then
	echo "update RELEASING.md (its table lists every module, in dependency order)"
fi
exit "$status"
