/** Self-test scenario for runChild: never exits by itself (an interval keeps it alive). */
console.log(JSON.stringify({ started: true }))
setInterval(() => undefined, 1_000)
