import { ConfigError, HostError } from '../model/errors.js';
import { readRegularFile } from '../model/regular-file.js';
import type { Config, ConfigResult } from './model.js';
import { type ParseOptions, parseConfig } from './parse.js';

/**
 * The config with every default and no domains, as the schema spells it: for the commands that must
 * work without a valid config (release, status, recover) and so must not hard-code its defaults.
 */
export function defaultConfig(): Config {
  return parseConfig('').config!;
}

/**
 * A parse done before the event, while the resident hook's worker waited for one (see
 * cli/resident/worker.ts). The parse is a function of the text and the host's name alone, so it is
 * used, once, when the file reads the same byte for byte for the same host: it is what parsing the
 * file now would give.
 */
let parsedAhead: { path: string; host: string | null; text: string; result: ConfigResult } | null = null;

export function parseConfigAhead(path: string, options: ParseOptions = {}): ConfigResult | null {
  try {
    const text = readConfigText(path);
    parsedAhead = { path, host: options.host ?? null, text, result: parseConfig(text, options) };
    return parsedAhead.result;
  } catch {
    parsedAhead = null; // the event reads (and reports) it itself
    return null;
  }
}

/** Read and validate the config file. A missing file is reported as such (`missing: true`). */
export async function loadConfigFile(
  path: string,
  options: ParseOptions = {},
): Promise<ConfigResult & { missing: boolean }> {
  let text: string;
  try {
    text = readConfigText(path);
  } catch (err) {
    if (err instanceof HostError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return { config: null, warnings: [], errors: [`no config file at ${path}`], missing: true };
    }
    throw HostError.from('read config', path, err);
  }
  const ahead = parsedAhead;
  parsedAhead = null;
  if (ahead && ahead.path === path && ahead.host === (options.host ?? null) && ahead.text === text)
    return { ...ahead.result, missing: false };
  return { ...parseConfig(text, options), missing: false };
}

/** The config's text (a link is followed, as config tools make them). */
function readConfigText(path: string): string {
  return readRegularFile(path, { operation: 'read config', why: '; qemu-hook reads its config from a file' });
}

/** The config or a ConfigError carrying every problem (each with its path) in one go. */
export async function requireConfig(
  path: string,
  options: ParseOptions = {},
): Promise<{ config: Config; warnings: readonly string[] }> {
  const r = await loadConfigFile(path, options);
  if (r.missing) {
    throw new ConfigError(
      `no config file at ${path}: create it (see examples/config.yaml) or pass --config FILE`,
      [],
    );
  }
  if (!r.config) {
    throw new ConfigError(
      `${path}: ${r.errors.length} problem${r.errors.length === 1 ? '' : 's'}; fix and run qemu-hook check`,
      r.errors,
    );
  }
  return { config: r.config, warnings: r.warnings };
}
