/**
 * Volume format versions (docs/format.md §5.1, §22, §23), in one place for
 * the config, the header codec, the filesystem and fsck.
 */

/** What `init` writes and what mounts read-write; older versions mount read-only. */
export const CURRENT_FORMAT_VERSION = 3;

/** The first version whose headers carry flags and kinds, and whose lower holds objects (§13, §23). */
export const OBJECTS_VERSION = 3;
