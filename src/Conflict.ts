/**
 * What a SQL table does when an inserted row collides with an existing row on a unique key.
 *
 * | mode | PostgreSQL | MySQL / MariaDB | SQLite | in-batch duplicates |
 * |---|---|---|---|---|
 * | `none` | plain `INSERT` | plain `INSERT` | plain `INSERT` | kept (the database decides) |
 * | `ignore` | `ON CONFLICT … DO NOTHING` | `INSERT IGNORE` | `INSERT OR IGNORE` | the first row wins |
 * | `replace` | `ON CONFLICT (key) DO UPDATE SET` every non-key column | `REPLACE INTO` | `INSERT OR REPLACE` | the last row wins |
 * | `update` | `ON CONFLICT (target) DO UPDATE SET` the `set` columns | `ON DUPLICATE KEY UPDATE` | `ON CONFLICT (target) DO UPDATE SET` | merged: first row, `set` columns from later rows |
 *
 * The exact statements are in `docs/guides/sql.md`; `Sql.preview` shows them for a table.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 * @category models
 */
export type Conflict = None | Ignore | Replace | Update

/**
 * A plain insert: a row that collides with an existing one fails its batch with `duplicate_key`
 * (and, as that is a row-level error, the engine isolates the colliding rows).
 *
 * @since 0.1.0
 * @category models
 */
export interface None {
  readonly _tag: "None"
}

/**
 * Keep the existing row; the colliding row is dropped. With a table `key`, PostgreSQL only ignores
 * collisions on that key (`ON CONFLICT (key) DO NOTHING`); without one, on any unique key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ignore {
  readonly _tag: "Ignore"
}

/**
 * Replace the existing row with the new one. Needs the table's `key`. On MySQL and SQLite this is the
 * native delete-then-insert (`REPLACE INTO` / `INSERT OR REPLACE`), so columns the table does not
 * list get their defaults; on PostgreSQL it updates every non-key column.
 *
 * @since 0.1.0
 * @category models
 */
export interface Replace {
  readonly _tag: "Replace"
}

/**
 * Insert, or update the `set` columns of the row whose `target` columns match.
 *
 * @since 0.1.0
 * @category models
 */
export interface Update {
  readonly _tag: "Update"
  /** The unique key the collision is detected on (the table's key). Not empty. */
  readonly target: ReadonlyArray<string>
  /** The columns overwritten on collision; `undefined` means every column outside `target`. */
  readonly set: ReadonlyArray<string> | undefined
}

/**
 * Plain `INSERT`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const none: Conflict = { _tag: "None" }

/**
 * Skip rows that collide with an existing row; inside one batch, the first row per key wins.
 *
 * Note that MySQL's `INSERT IGNORE` and SQLite's `INSERT OR IGNORE` also turn other errors into
 * warnings or skips (MySQL truncates too-long values and stores a default for NULL in a NOT NULL
 * column; SQLite skips rows breaking NOT NULL or CHECK). PostgreSQL ignores only key collisions.
 *
 * @since 0.1.0
 * @category constructors
 */
export const ignore: Conflict = { _tag: "Ignore" }

/**
 * Replace colliding rows; inside one batch, the last row per key wins. The table needs a `key`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const replace: Conflict = { _tag: "Replace" }

/**
 * Upsert: insert, or update the `set` columns (default: every column outside `target`) of the row
 * whose `target` columns match. Inside one batch, rows with the same key are merged as if they were
 * written one after the other: the first row, with the `set` columns of later rows.
 *
 * @example
 * ```ts
 * import { Conflict } from "effect-batchflow"
 *
 * const mode = Conflict.update({ target: ["id"], set: ["name", "email"] })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const update = (options: {
  readonly target: ReadonlyArray<string>
  readonly set?: ReadonlyArray<string> | undefined
}): Conflict => ({ _tag: "Update", target: [...options.target], set: options.set && [...options.set] })

/**
 * The mode's name as used in previews, logs and docs.
 *
 * @since 0.1.0
 * @category getters
 */
export const mode = (conflict: Conflict): "none" | "ignore" | "replace" | "update" => {
  switch (conflict._tag) {
    case "None":
      return "none"
    case "Ignore":
      return "ignore"
    case "Replace":
      return "replace"
    case "Update":
      return "update"
  }
}
