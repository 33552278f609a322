/**
 * The reliability suite writes what it measured into docs/reliability.md when run with
 * `RELIABILITY_WRITE_DOCS=1`: each test owns a block between `<!-- <section>:begin -->` and
 * `<!-- <section>:end -->`, replaced whole. Without the variable (CI) nothing is written.
 */
import fs from "node:fs";
import path from "node:path";

const FILE = path.join(__dirname, "..", "..", "docs", "reliability.md");

export function writeReliabilityFigures(section: string, markdown: string): void {
	if (!process.env.RELIABILITY_WRITE_DOCS || !fs.existsSync(FILE)) return;
	const text = fs.readFileSync(FILE, "utf8");
	const begin = `<!-- ${section}:begin -->`;
	const end = `<!-- ${section}:end -->`;
	if (!text.includes(begin) || !text.includes(end)) throw new Error(`docs/reliability.md has no ${begin} … ${end} block`);
	fs.writeFileSync(FILE, text.slice(0, text.indexOf(begin)) + `${begin}\n${markdown.trim()}\n${end}` + text.slice(text.indexOf(end) + end.length));
}
