/**
 * The PAM lines of `cryptmount home` in Debian's common-auth, common-session
 * and common-password (docs/home.md, "The PAM lines"), as pure text edits:
 * adding is idempotent (a line already there is replaced, never doubled),
 * removing takes out exactly what adding put in.
 */

export const MARK =
  "# cryptmount home: added by `cryptmount home setup`, removed by `cryptmount home remove`";

export type PamType = "auth" | "session" | "password";

/** Debian's stacks and the type of line each gets. */
export const COMMON_FILES: readonly { file: string; type: PamType }[] = [
  { file: "common-auth", type: "auth" },
  { file: "common-session", type: "session" },
  { file: "common-password", type: "password" },
];

export function pamLine(type: PamType, modulePath: string, options: readonly string[]): string {
  return `${type}\toptional\t${modulePath}${options.length > 0 ? " " + options.join(" ") : ""}`;
}

function isOurs(line: string): boolean {
  return /(^|\/|\s)pam_cryptmount\.so(\s|$)/.test(line) && !line.trimStart().startsWith("#");
}

/** `text` without our mark and lines. */
export function removeLines(text: string): string {
  const lines = text.split("\n").filter((l) => l !== MARK && !isOurs(l));
  return lines.join("\n");
}

/**
 * `text` with our line at the end of the stack: after pam_unix and the
 * `[success=N]` jump it guards, so the module runs only once the password
 * was accepted (auth) or changed (password).
 */
export function addLine(text: string, line: string): string {
  const base = removeLines(text).replace(/\n*$/, "");
  return `${base}\n${MARK}\n${line}\n`;
}

export function hasOurLine(text: string, type: PamType): boolean {
  return text.split("\n").some((l) => isOurs(l) && l.trimStart().split(/\s+/)[0] === type);
}

/**
 * Whether a PAM service file changes passwords without Debian's common
 * password stack (so without our rewrap): it has `password` lines of its own
 * and none includes common-password (fscrypt #94).
 */
export function passwordsBypassCommon(text: string): boolean {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const includesCommon = lines.some(
    (l) =>
      /^@include\s+common-password\b/.test(l) ||
      /^-?password\s+(include|substack)\s+common-password\b/.test(l),
  );
  const ownPasswordLines = lines.some((l) => /^-?password\s/.test(l));
  return ownPasswordLines && !includesCommon && !lines.some((l) => isOurs(l));
}
