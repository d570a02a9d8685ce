/**
 * The `effect-batchflow` program: the root command with its subcommands, run against an argv.
 * Answers the process exit code instead of exiting, so that it can be embedded and tested.
 *
 * @since 0.1.0
 */
import { readFileSync } from "node:fs"
import { format } from "node:util"
import type * as CliApp from "@effect/cli/CliApp"
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Span from "@effect/cli/HelpDoc/Span"
import * as Usage from "@effect/cli/Usage"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Arr from "effect/Array"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
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
 * Whether to colour what goes to `stream`: `FORCE_COLOR` decides when it is set (`""`, `1`, `2`, `3`
 * or `true`: colour; anything else: none, as Node reads it), then a non-empty `NO_COLOR` turns colour
 * off; otherwise only a terminal (not a file or a pipe, nor `TERM=dumb`) gets colour.
 *
 * @since 0.1.0
 * @category utils
 */
export const colorEnabled = (
  stream: { readonly isTTY?: boolean | undefined },
  env: Record<string, string | undefined> = process.env
): boolean => {
  const force = env.FORCE_COLOR
  if (force !== undefined) return ["", "1", "2", "3", "true"].includes(force.trim().toLowerCase())
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false
  return stream.isTTY === true && env.TERM !== "dumb"
}

const sgr = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g")

/**
 * `text` without its ANSI colour and style sequences.
 *
 * @since 0.1.0
 * @category utils
 */
export const stripAnsi = (text: string): string => text.replace(sgr, "")

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
  version,
  color: { out: colorEnabled(process.stdout), err: colorEnabled(process.stderr) }
}

/**
 * @effect/cli writes its help, version and parse errors through `Console`: here they go to `io`,
 * without colours unless `io.color` allows them on that stream.
 */
const consoleOf = (io: Io, base: Console.Console): Console.Console => {
  const out = (...args: ReadonlyArray<unknown>) =>
    Effect.sync(() => {
      const text = format(...args)
      io.out(io.color?.out === true ? text : stripAnsi(text))
    })
  const err = (...args: ReadonlyArray<unknown>) =>
    Effect.sync(() => {
      const text = format(...args)
      io.err(io.color?.err === true ? text : stripAnsi(text))
    })
  return { ...base, log: out, info: out, error: err, warn: err }
}

/**
 * @effect/cli's help prints, before every option's own description, a generic sentence about its
 * type ("A user-defined piece of text.", "A true or false value.", "One of the following: …"): the
 * first paragraph of each option's entry (0.77: `Options.withDescription` appends to it, it cannot
 * replace it). Drops it, so that each option shows its own description only.
 */
const withoutTypeSentences = (doc: HelpDoc.HelpDoc): HelpDoc.HelpDoc => {
  const dropFirstParagraph = (block: HelpDoc.HelpDoc): HelpDoc.HelpDoc =>
    HelpDoc.isParagraph(block)
      ? HelpDoc.empty
      : HelpDoc.isSequence(block)
        ? HelpDoc.sequence(dropFirstParagraph(block.left), block.right)
        : block
  if (HelpDoc.isDescriptionList(doc)) {
    return HelpDoc.descriptionList(
      Arr.map(doc.definitions, ([span, block]): [Span.Span, HelpDoc.HelpDoc] => [
        span,
        dropFirstParagraph(block)
      ])
    )
  }
  if (HelpDoc.isSequence(doc)) {
    return HelpDoc.sequence(withoutTypeSentences(doc.left), withoutTypeSentences(doc.right))
  }
  return doc
}

/**
 * The help page of `command` as @effect/cli lays it out (name, version, usage, description,
 * options), with two differences: the usage line is the full command line (`$ effect-batchflow
 * bench …`; @effect/cli 0.77 prints only the subcommand's name), and the options show their own
 * descriptions only.
 */
const helpPage = (usage: Usage.Usage, help: HelpDoc.HelpDoc, config: CliConfig.CliConfig): HelpDoc.HelpDoc =>
  HelpDoc.blocks([
    HelpDoc.h1(Span.code("effect-batchflow")),
    HelpDoc.p(`effect-batchflow ${version}`),
    HelpDoc.h1("USAGE"),
    ...Usage.enumerate(usage, config).map((line) => HelpDoc.p(Span.concat(Span.text("$ "), line))),
    withoutTypeSentences(help)
  ])

const isHelpFlag = (arg: string) => arg === "--help" || arg === "-h"

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
    const benchCommand = bench(io, (c) => (code = c))
    const root = Command.make("effect-batchflow").pipe(
      Command.withDescription("Asynchronous batch writing for Effect: tools."),
      Command.withSubcommands([benchCommand])
    )
    const args = argv.slice(2)
    const showHelp = (usage: Usage.Usage, help: (config: CliConfig.CliConfig) => HelpDoc.HelpDoc) =>
      Effect.serviceOption(CliConfig.CliConfig).pipe(
        Effect.map(Option.getOrElse(() => CliConfig.defaultConfig)),
        Effect.flatMap((config) => Console.log(HelpDoc.toAnsiText(helpPage(usage, help(config), config)))),
        Effect.as(0)
      )
    const program: Effect.Effect<number, never, CliApp.CliApp.Environment> =
      args[0] === "bench" && args.slice(1).some(isHelpFlag)
        ? showHelp(
            Usage.concat(Usage.named(["effect-batchflow"], Option.none()), Command.getUsage(benchCommand)),
            (config) => Command.getHelp(benchCommand, config)
          )
        : args.length === 0 || isHelpFlag(args[0]!)
          ? showHelp(Command.getUsage(root), (config) => Command.getHelp(root, config))
          : Command.run(root, { name: "effect-batchflow", version })(argv).pipe(
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
    return Console.consoleWith((base) => Console.withConsole(program, consoleOf(io, base)))
  })
