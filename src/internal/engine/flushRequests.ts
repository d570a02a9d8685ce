/**
 * Pending `flush` calls. A flush waits for the rows accepted before it: once all of them have been
 * taken off the buffer, it is answered with the groups in flight at that moment, which it then waits
 * for. Counted in rows (accepted / taken), so answering costs nothing per row.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { Completion } from "./completion.js"
import type { Group } from "./group.js"

/** @internal */
export class FlushRequests {
  private waiters: Array<{
    readonly mark: number
    readonly answer: Completion<ReadonlyArray<Group>>
  }> = []

  /** Whether a flush is waiting: the workers then take a partial batch at once. */
  get pending(): boolean {
    return this.waiters.length > 0
  }

  /** A flush of the first `mark` rows accepted; answered with the groups to wait for. */
  add(mark: number): Completion<ReadonlyArray<Group>> {
    const answer = new Completion<ReadonlyArray<Group>>()
    this.waiters.push({ mark, answer })
    return answer
  }

  /** After a batch is taken: answers the flushes whose rows have all been taken (`dispatched` rows). */
  resolve(dispatched: number, inFlight: ReadonlySet<Group>): void {
    if (this.waiters.length === 0) return
    const snapshot = Array.from(inFlight)
    this.waiters = this.waiters.filter((waiter) => {
      if (waiter.mark > dispatched) return true
      waiter.answer.unsafeDone(Exit.succeed(snapshot))
      return false
    })
  }

  /** The flow is done: answers every flush still waiting, with nothing left to wait for. */
  endAll(): void {
    for (const waiter of this.waiters) waiter.answer.unsafeDone(Exit.succeed([]))
    this.waiters = []
  }
}

/** @internal */
export const awaitGroups = (groups: ReadonlyArray<Group>): Effect.Effect<void> =>
  Effect.forEach(groups, (g) => g.done.await, { discard: true })
