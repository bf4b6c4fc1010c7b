// Hooks people already have in /etc/libvirt/hooks/qemu before they install qemu-hook.

/**
 * The VFIO-Tools hook helper as tutorials copy it (PassthroughPOST/VFIO-Tools, libvirt_hooks/qemu,
 * by Sebastiaan Meijer), byte for byte including its `[ -s "$HOOKPATH"]` typo: it only runs
 * `qemu.d/<vm>/<op>/<subop>` scripts, which qemu-hook runs itself, so install.sh replaces it.
 */
export const VFIO_TOOLS_DISPATCHER = `#!/bin/bash
#
# Author: Sebastiaan Meijer (sebastiaan@passthroughpo.st)
#
# Copy this file to /etc/libvirt/hooks, make sure it's called "qemu".
# After this file is installed, restart libvirt.
# From now on, you can easily add per-guest qemu hooks.
# Add your hooks in /etc/libvirt/hooks/qemu.d/vm_name/hook_name/state_name.
# For a list of available hooks, please refer to https://www.libvirt.org/hooks.html
#

GUEST_NAME="$1"
HOOK_NAME="$2"
STATE_NAME="$3"
MISC="\${@:4}"

BASEDIR="$(dirname $0)"

HOOKPATH="$BASEDIR/qemu.d/$GUEST_NAME/$HOOK_NAME/$STATE_NAME"

set -e # If a script exits with an error, we should as well.

# check if it's a non-empty executable file
if [ -f "$HOOKPATH" ] && [ -s "$HOOKPATH"] && [ -x "$HOOKPATH" ]; then
    eval \\"$HOOKPATH\\" "$@"
elif [ -d "$HOOKPATH" ]; then
    while read file; do
        # check for null string
        if [ ! -z "$file" ]; then
          eval \\"$file\\" "$@"
        fi
    done <<< "$(find -L "$HOOKPATH" -maxdepth 1 -type f -executable -print;)"
fi
`;
