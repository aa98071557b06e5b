#!/usr/bin/env node
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { resolveConfig, type ConfigInput } from "./config.js";
import { ConfigError } from "./errors.js";
import { serveOptions } from "./flags.js";
import { createLogger } from "./log.js";
import { nodeCommands } from "./control/node-commands.js";
import { runBalancer } from "./workers/run.js";

/** A wrong flag is one clear line and exit code 2, never a stack trace. */
function usageError(message: string): never {
  process.stderr.write(`xmpp-lb: ${message.replace(/\s*\n\s*/g, " ")}\nRun 'xmpp-lb --help' for the flags.\n`);
  process.exit(2);
}

async function serve(argv: ConfigInput): Promise<void> {
  const config = resolveConfig(argv);
  await runBalancer(config, createLogger(config.logLevel, config.logFormat));
}

export async function main(args: string[]): Promise<void> {
  await yargs(args)
    .scriptName("xmpp-lb")
    .env("XMPP_LB")
    .config("config", "JSON file with any of the flags (keys as the flag names)")
    .command(
      ["serve", "$0"],
      "run the balancer (the default command)",
      (y) => y.options(serveOptions()),
      async (argv) => serve(argv as ConfigInput),
    )
    .command(nodeCommands)
    .strict()
    .help()
    .version()
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((message, err) => {
      if (err instanceof ConfigError) usageError(err.message);
      if (err) throw err;
      usageError(message ?? "bad arguments");
    })
    .parseAsync();
}

main(hideBin(process.argv)).catch((err: unknown) => {
  if (err instanceof ConfigError) usageError(err.message);
  process.stderr.write(`xmpp-lb: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
