// Machine-specific absolute paths (someone's home or work directory) must never reach a committed or shipped file.

// A home, Users, root or work directory under `/` (or a Windows user folder), not a URL path (`https://host/work/…`).
const MACHINE_PATH = /(?<![\w.~:/-])(?:\/(?:home|Users|root|work)\/[\w.-]|[A-Za-z]:\\Users\\)/;

/** The lines of `text` that carry a machine path, as `line N: …`. */
export function machinePaths(text: string): string[] {
  return text.split('\n').flatMap((line, i) => (MACHINE_PATH.test(line) ? [`line ${i + 1}: ${line.trim()}`] : []));
}
