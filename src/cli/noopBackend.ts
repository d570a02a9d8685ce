/**
 * W0, the engine alone (`--backend noop`): an executor that counts the rows, sums their ids and
 * checks every 101st row, and returns. The baseline is a plain-JS bounded batcher doing the same
 * grouping into the same sink: the floor no Effect-based engine can beat.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as BatchExecutor from "../BatchExecutor.js"
import * as BatchFlow from "../BatchFlow.js"
import * as Target from "../Target.js"
import { type Harness, integrityOf, type MakeHarness, tamperedIds } from "./harness.js"
import { countingSink, plainBatcher, rowsOf } from "./raw.js"
import { BenchRowSchema, flowOptions, makeRow } from "./workload.js"

const Events = Target.make("bench_events", { schema: BenchRowSchema, key: ["id"] })

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: MakeHarness = (spec) =>
  Effect.sync(() => {
    const sink = countingSink()
    const executor = BatchExecutor.forTarget(Events, (rows) => Effect.sync(() => sink.accept(rows)))
    const harness: Harness = {
      description: "no database (W0): an executor that counts rows and returns",
      flowDescription: `BatchFlow.layer with an executor that counts rows, ${spec.submitAll ? "submitAll" : "per-row submit"} from ${spec.producers} producers`,
      notes: [],
      flowLayer: BatchFlow.layer({ ...flowOptions(spec), executors: [executor] }),
      ops: (flow) => ({
        submit: (id) => flow.submit(Events, makeRow(id)),
        submitAll: (first, last) => flow.submitAll(Events, rowsOf(first, last)),
        write: (id) => flow.write(Events, makeRow(id))
      }),
      reset: Effect.sync(() => sink.reset()),
      verify: (rows) =>
        Effect.sync(() => {
          const problems: Array<string> = []
          const expectedSum = (rows * (rows + 1)) / 2
          if (sink.count === rows && sink.idSum !== expectedSum) {
            problems.push(
              `the ids written sum to ${sink.idSum}, expected ${expectedSum} (some ids twice, others never)`
            )
          }
          return integrityOf({
            expected: rows,
            found: sink.count,
            wrongContent: sink.wrong,
            spotChecked: Math.floor(rows / 101),
            problems
          })
        }),
      tamper: (tamper, rows) =>
        Effect.sync(() => {
          const ids = tamperedIds(tamper.rows, rows)
          if (tamper.kind === "delete") {
            sink.count -= ids.length
            for (const id of ids) sink.idSum -= id
          } else {
            sink.wrong += ids.length
          }
        }),
      baselines: [
        {
          name: "plain-JS batcher",
          description: `a plain-JS bounded buffer (${spec.bufferSize}) with ${spec.producers} producers, batches of ≤ ${spec.flushSize} every ${Duration.format(spec.flushInterval)} or when full, into the same counting sink`,
          run: (rows, counter) =>
            plainBatcher(
              rows,
              {
                producers: spec.producers,
                bufferSize: spec.bufferSize,
                flushSize: spec.flushSize,
                flushIntervalMillis: Duration.toMillis(spec.flushInterval)
              },
              sink,
              counter
            )
        }
      ],
      cleanup: Effect.void
    }
    return harness
  })
