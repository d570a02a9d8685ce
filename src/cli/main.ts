/**
 * The `effect-batchflow` program: the root command with its subcommands, run against an argv.
 * Answers the process exit code instead of exiting, so that it can be embedded and tested.
 *
 * @since 0.1.0
 */
import { readFileSync } from "node:fs"
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Effect from "effect/Effect"
import type { Io } from "./bench.js"
import { bench } from "./command.js"

/**
 * The package version (read from package.json, which sits two folders up from both `src/cli` and
 * `dist/cli`).
 *
 * @since 0.1.0
 * @category constants
 */
export const version: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      readonly version?: unknown
    }
    return typeof pkg.version === "string" ? pkg.version : "0.0.0"
  } catch {
    return "0.0.0"
  }
})()

/**
 * The process's standard streams as the bench's `Io`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const processIo: Io = {
  out: (line) => {
    process.stdout.write(`${line}\n`)
  },
  err: (line) => {
    process.stderr.write(`${line}\n`)
  },
  progress: { stream: process.stderr },
  version
}

/**
 * Runs the command line `argv` (as in `process.argv`: the node binary and the script first) and
 * answers the exit code: 0 success, 1 a failed run, 2 bad flags or command.
 *
 * @since 0.1.0
 * @category commands
 */
export const main = (
  argv: ReadonlyArray<string>,
  io: Io = processIo
): Effect.Effect<number, never, CliApp.CliApp.Environment> =>
  Effect.suspend(() => {
    let code = 0
    const root = Command.make("effect-batchflow").pipe(
      Command.withDescription("Asynchronous batch writing for Effect: tools."),
      Command.withSubcommands([bench(io, (c) => (code = c))])
    )
    return Command.run(root, { name: "effect-batchflow", version })(argv).pipe(
      Effect.map(() => code),
      Effect.catchAll((error) =>
        Effect.sync(() => {
          // @effect/cli has printed the problem (and the usage) already.
          if (!ValidationError.isValidationError(error)) io.err(`effect-batchflow: ${String(error)}`)
          io.err("Run `effect-batchflow bench --help` for every flag and its default.")
          return 2
        })
      )
    )
  })
