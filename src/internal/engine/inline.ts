/**
 * An Effect that does its synchronous work at the moment a generator `yield*`s it.
 *
 * `yield* effect` inside `Effect.gen` first asks the effect for its iterator (`[Symbol.iterator]()`)
 * and, if that iterator is already done, takes its value inline: the calling fiber's run loop never
 * sees an operation. So an effect whose work is synchronous (validate a row, put it in a slot) can
 * do that work when asked for its iterator and hand back a finished one: per-row `submit` then costs
 * no run-loop operation and no allocation beyond the effect itself. When some of the work is left
 * (the buffer is full, a batch boundary yields to the workers, a failure), what is left is returned
 * as an ordinary effect, which the generator yields as usual.
 *
 * Everything else that runs the effect (`pipe`, `Effect.runPromise`, combinators, a second run)
 * reaches `commit`, which does the same work inside an `Effect.suspend`. Only public Effect APIs are
 * used (`Effectable.Class`, `Utils.SingleShotGen`, `Utils.YieldWrap`); test/inline.test.ts fails
 * loudly if `yield*` stops taking the inline path.
 */
import * as Effect from "effect/Effect"
import * as Effectable from "effect/Effectable"
import { SingleShotGen, YieldWrap } from "effect/Utils"

const finished: IteratorResult<never, void> = Object.freeze({ done: true, value: undefined })

/** An iterator that is done at its first step: `yield*` on it returns at once. */
const done: Iterator<never, void> = Object.freeze({ next: () => finished })

/** @internal */
export abstract class Inline<E> extends Effectable.Class<void, E> {
  /**
   * Does the synchronous part of the work now; returns the rest, or `Effect.void` when nothing is
   * left. Called once per run of the effect.
   */
  protected abstract now(): Effect.Effect<void, E>

  override commit(): Effect.Effect<void, E> {
    return Effect.suspend(() => this.now())
  }

  override [Symbol.iterator](): Iterator<YieldWrap<Effect.Effect<void, E>>, void> {
    const rest = this.now()
    return rest === Effect.void ? done : (new SingleShotGen(new YieldWrap(rest)) as never)
  }
}
