/**
 * The Chinese translations keep the structure of the English originals: the same `##` / `###`
 * sections in the same order, and the same code blocks (language tag and content, byte for byte), so
 * that a change to one that is not made to the other fails here, naming the first difference.
 */
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))

interface Heading {
  readonly level: number
  readonly text: string
  readonly line: number
}

interface CodeBlock {
  readonly lang: string
  readonly content: string
  readonly line: number
}

interface Outline {
  readonly headings: ReadonlyArray<Heading>
  readonly blocks: ReadonlyArray<CodeBlock>
}

/** The `##` / `###` headings outside code blocks, and every fenced code block. */
const outline = (markdown: string): Outline => {
  const headings: Array<Heading> = []
  const blocks: Array<CodeBlock> = []
  const lines = markdown.split("\n")
  let fence: { readonly marker: string; readonly lang: string; readonly line: number } | undefined
  let body: Array<string> = []
  lines.forEach((text, index) => {
    const line = index + 1
    if (fence === undefined) {
      const open = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/.exec(text)
      if (open !== null) {
        fence = { marker: open[1]!, lang: open[2] ?? "", line }
        body = []
        return
      }
      const heading = /^(#{2,3})\s+(.*?)\s*#*\s*$/.exec(text)
      if (heading !== null) headings.push({ level: heading[1]!.length, text: heading[2]!, line })
      return
    }
    const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(text)
    if (close !== null && close[1]![0] === fence.marker[0] && close[1]!.length >= fence.marker.length) {
      blocks.push({ lang: fence.lang, content: body.join("\n"), line: fence.line })
      fence = undefined
      return
    }
    body.push(text)
  })
  if (fence !== undefined) blocks.push({ lang: fence.lang, content: body.join("\n"), line: fence.line })
  return { headings, blocks }
}

const show = (h: Heading) => `"${"#".repeat(h.level)} ${h.text}" (line ${h.line})`

const firstDifferentLine = (a: string, b: string): string => {
  const as = a.split("\n")
  const bs = b.split("\n")
  for (let i = 0; i < Math.max(as.length, bs.length); i++) {
    if (as[i] !== bs[i]) {
      return `line ${i + 1} of the block: ${JSON.stringify(as[i] ?? "<end of block>")} vs ${JSON.stringify(bs[i] ?? "<end of block>")}`
    }
  }
  return "same lines"
}

/**
 * The first structural difference between an original and its translation, as a sentence naming
 * both files, or `undefined` when they match.
 */
const firstDifference = (
  original: { readonly name: string; readonly text: string },
  translation: { readonly name: string; readonly text: string }
): string | undefined => {
  const a = outline(original.text)
  const b = outline(translation.text)
  for (let i = 0; i < Math.max(a.headings.length, b.headings.length); i++) {
    const ha = a.headings[i]
    const hb = b.headings[i]
    if (ha === undefined) {
      return `${translation.name} has a section ${show(hb!)} (section ${i + 1}) after the last of the ${a.headings.length} sections of ${original.name}`
    }
    if (hb === undefined) {
      return `${original.name}'s section ${i + 1}, ${show(ha)}, is missing from ${translation.name} (which has ${b.headings.length} sections)`
    }
    if (ha.level !== hb.level) {
      return `section ${i + 1}: ${original.name} has ${show(ha)} at level ${ha.level}, ${translation.name} has ${show(hb)} at level ${hb.level}`
    }
  }
  for (let i = 0; i < Math.max(a.blocks.length, b.blocks.length); i++) {
    const ba = a.blocks[i]
    const bb = b.blocks[i]
    if (ba === undefined) {
      return `${translation.name} has a code block at line ${bb!.line} (block ${i + 1}) after the last of the ${a.blocks.length} blocks of ${original.name}`
    }
    if (bb === undefined) {
      return `${original.name}'s code block ${i + 1} (line ${ba.line}) is missing from ${translation.name} (which has ${b.blocks.length} blocks)`
    }
    if (ba.lang !== bb.lang) {
      return `code block ${i + 1}: ${original.name} line ${ba.line} is \`\`\`${ba.lang}, ${translation.name} line ${bb.line} is \`\`\`${bb.lang}`
    }
    if (ba.content !== bb.content) {
      return `code block ${i + 1} differs (${original.name} line ${ba.line}, ${translation.name} line ${bb.line}): ${firstDifferentLine(ba.content, bb.content)}`
    }
  }
  return undefined
}

const pairs: ReadonlyArray<readonly [original: string, translation: string]> = [
  ["README.md", "README.zh-CN.md"],
  ["docs/guides/migrating-from-go.md", "docs/guides/migrating-from-go.zh-CN.md"]
]

const read = (path: string) => ({ name: path, text: readFileSync(join(root, path), "utf8") })

describe("translations keep the structure of their originals", () => {
  for (const [original, translation] of pairs) {
    it(`${translation} has the sections and code blocks of ${original}`, () => {
      expect(existsSync(join(root, translation)), `${translation} is missing`).toBe(true)
      expect(firstDifference(read(original), read(translation))).toBeUndefined()
    })

    it(`${original} and ${translation} link to each other at the top`, () => {
      const top = (path: string) => read(path).text.split("\n").slice(0, 5).join("\n")
      const name = (path: string) => path.split("/").pop()!
      expect(top(original), `the first lines of ${original} should link ${translation}`).toContain(
        `(${name(translation)})`
      )
      expect(top(translation), `the first lines of ${translation} should link ${original}`).toContain(
        `(${name(original)})`
      )
    })
  }
})

describe("the structure check", () => {
  const en = [
    "# T",
    "## One",
    "```ts",
    "const a = 1",
    "```",
    "### Two",
    "```sh",
    "## not a heading: inside a block",
    "```"
  ].join("\n")
  const check = (text: string) => firstDifference({ name: "en.md", text: en }, { name: "zh.md", text })

  it("accepts translated headings and prose with identical code blocks", () => {
    expect(check(en.replace("## One", "## 一").replace("### Two", "### 二"))).toBeUndefined()
  })

  it("names a section at another level", () => {
    expect(check(en.replace("### Two", "## 二"))).toBe(
      'section 2: en.md has "### Two" (line 6) at level 3, zh.md has "## 二" (line 6) at level 2'
    )
  })

  it("names a missing section", () => {
    expect(check(en.replace("### Two\n", ""))).toContain(`en.md's section 2, "### Two" (line 6), is missing`)
  })

  it("names a code block whose content or language differs", () => {
    expect(check(en.replace("const a = 1", "const a = 2"))).toBe(
      'code block 1 differs (en.md line 3, zh.md line 3): line 1 of the block: "const a = 1" vs "const a = 2"'
    )
    expect(check(en.replace("```sh", "```bash"))).toBe(
      "code block 2: en.md line 7 is ```sh, zh.md line 7 is ```bash"
    )
  })

  it("does not count headings inside code blocks", () => {
    expect(outline(en).headings.map((h) => h.text)).toEqual(["One", "Two"])
  })
})
