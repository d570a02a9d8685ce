/**
 * Which executor writes which target: the flow's executors in the order given (`forAll` ones last),
 * each target going to the first that accepts it, looked up once per target and kept. Each route
 * has its classifier: the user's rules, then its executor's, then the engine's; it never throws.
 */
import * as Effect from "effect/Effect"
import type { BatchExecutor } from "../../BatchExecutor.js"
import { NoExecutor } from "../../BatchFlowError.js"
import * as Retry from "../../Retry.js"
import type * as Target from "../../Target.js"

/** @internal An executor of the flow, made, with the targets it accepts. */
export interface Made {
  readonly name: string
  readonly accepts: (target: Target.Any) => boolean
  readonly executor: BatchExecutor
}

/** @internal */
export interface Route {
  readonly executor: BatchExecutor
  readonly classify: (error: unknown) => Retry.Classification
}

const noExecutorRule: Retry.Rule = (error) =>
  error instanceof NoExecutor ? { retryable: false, reason: "no_executor" } : undefined

const classifierFailed: Retry.Classification = { retryable: false, reason: "classifier_failed" }

/**
 * The rules are user code: one that throws must not leave rows unsettled wherever it is asked
 * (an attempt's error, a Partial's row errors, a late answer). Its rows are reported, final, with
 * reason `classifier_failed` and the error the rule was given as the cause.
 */
const safely =
  (classify: (error: unknown) => Retry.Classification) =>
  (error: unknown): Retry.Classification => {
    try {
      return classify(error)
    } catch {
      return classifierFailed
    }
  }

/** @internal */
export class Routes {
  private readonly routes = new Map<Target.Any, Route>()
  private readonly made: ReadonlyArray<Made & { readonly route: Route }>
  private readonly none: Route

  constructor(
    made: ReadonlyArray<Made>,
    userRules: ReadonlyArray<Retry.Rule>,
    /** The names of the executors, for the error of a target none accepts. */
    private readonly names: ReadonlyArray<string>
  ) {
    this.made = made.map((m) => ({
      ...m,
      route: {
        executor: m.executor,
        classify: safely(Retry.classifyWith([...userRules, ...m.executor.rules, Retry.engineRule]))
      }
    }))
    this.none = {
      executor: {
        rules: [],
        execute: (target) => Effect.fail(new NoExecutor({ target: target.name, executors: this.names }))
      },
      classify: Retry.classifyWith([noExecutorRule])
    }
  }

  /** The route of a target: per group, a map lookup once the target was seen. */
  of(target: Target.Any): Route {
    let route = this.routes.get(target)
    if (route === undefined) {
      route = this.made.find((m) => m.accepts(target))?.route ?? this.none
      this.routes.set(target, route)
    }
    return route
  }
}
