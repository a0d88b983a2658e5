// client.mjs — the official MCP TypeScript SDK's client drives `aegis mcp`
// over stdio through a whole session: list the tools, then start an
// instance, exec in it, write, read and list its files, read its logs,
// list secrets (whose value must never come back), pause, resume, delete,
// and one-shot runs. Exits non-zero at the first failed check.
//
// Environment: AEGIS_BIN (the aegis under test), AEGIS_SOCKET and
// AEGIS_STATE_DIR (a private daemon), AEGIS_MCP_SECRET (a stored secret's
// name) and AEGIS_MCP_CANARY (its value).
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const env = {};
for (const k of ['PATH', 'HOME', 'AEGIS_SOCKET', 'AEGIS_STATE_DIR', 'ASAN_OPTIONS', 'UBSAN_OPTIONS'])
	if (process.env[k] !== undefined) env[k] = process.env[k];
const secret = process.env.AEGIS_MCP_SECRET, canary = process.env.AEGIS_MCP_CANARY;
assert.ok(process.env.AEGIS_BIN && secret && canary, 'AEGIS_BIN, AEGIS_MCP_SECRET and AEGIS_MCP_CANARY are needed');

const expected = ['exec', 'file_list', 'file_read', 'file_write', 'instance_delete', 'instance_info',
	'instance_list', 'instance_start', 'instance_stop', 'logs', 'pause', 'resume', 'run', 'secret_list'];
const seen = [];	// every result, to look for the canary in at the end

const transport = new StdioClientTransport({ command: process.env.AEGIS_BIN, args: ['mcp'], env, stderr: 'inherit' });
const client = new Client({ name: 'aegis-tests', version: '1.0.0' });

async function call(name, args, { error = false } = {}) {
	const r = await client.callTool({ name, arguments: args }, undefined, { timeout: 120000 });
	seen.push(JSON.stringify(r));
	const text = r.content.map((c) => c.text).join('\n');
	if (error)
		assert.equal(r.isError, true, `${name} should have failed: ${text}`);
	else
		assert.ok(!r.isError, `${name} ${JSON.stringify(args)} failed: ${text}`);
	assert.equal(r.content[0].type, 'text');
	return { r, s: r.structuredContent, text };
}

async function until(what, check, ms = 10000) {
	const end = Date.now() + ms;
	for (;;) {
		const v = await check();
		if (v)
			return v;
		assert.ok(Date.now() < end, `timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 100));
	}
}

await client.connect(transport);
const info = client.getServerVersion();
assert.equal(info.name, 'aegis');
assert.ok(client.getInstructions().includes('sandbox'), 'the server explains itself');

// the tools, each with a description and an object input schema
const { tools } = await client.listTools();
assert.deepEqual(tools.map((t) => t.name).sort(), expected);
for (const t of tools) {
	assert.equal(t.inputSchema.type, 'object', `${t.name}: inputSchema`);
	assert.ok(t.description.length > 20, `${t.name}: description`);
	assert.equal(t.inputSchema.additionalProperties, false, `${t.name}: closed schema`);
}

// a persistent instance: start, exec, files both ways, logs
const name = 'mcp-sdk';
let r = await call('instance_start', { name, argv: ['sh', '-c', 'echo ready; while :; do sleep 0.2; echo tick; done'] });
assert.equal(r.s.state, 'running', r.text);
r = await call('exec', { name, argv: ['sh', '-c', 'echo out; echo err >&2; exit 3'] });
assert.equal(r.s.exit_code, 3);
assert.equal(r.s.stdout, 'out\n');
assert.equal(r.s.stderr, 'err\n');
assert.match(r.text, /^exit 3/);

r = await call('file_write', { name, path: 'src/hello.py', content: 'print("hi from the workspace")\n', create_dirs: true });
assert.equal(r.s.bytes, 31);
r = await call('exec', { name, argv: ['python3', '/workspace/src/hello.py'] });
assert.equal(r.s.stdout, 'hi from the workspace\n', 'the sandbox sees what file_write wrote');
await call('exec', { name, argv: ['sh', '-c', 'printf made-inside > /workspace/src/out.txt; printf "\\001\\377" > /workspace/bin'] });
r = await call('file_read', { name, path: '/workspace/src/out.txt' });
assert.equal(r.s.content, 'made-inside');
assert.equal(r.s.encoding, 'utf-8');
r = await call('file_read', { name, path: 'bin' });
assert.equal(r.s.encoding, 'base64');
assert.equal(Buffer.from(r.s.content, 'base64').toString('hex'), '01ff');
r = await call('file_write', { name, path: 'bin2', content: Buffer.from([0, 1, 2, 255]).toString('base64'), encoding: 'base64' });
r = await call('exec', { name, argv: ['od', '-An', '-tx1', '/workspace/bin2'] });
assert.equal(r.s.stdout.trim(), '00 01 02 ff');
r = await call('file_list', { name, recursive: true });
assert.deepEqual(r.s.entries.map((e) => e.path), ['bin', 'bin2', 'src', 'src/hello.py', 'src/out.txt']);
r = await call('file_read', { name, path: '../config.json' }, { error: true });
assert.match(r.text, /\.\./);

r = await until('the first log lines', async () => {
	const x = await call('logs', { name, tail: 5 });
	return x.s.stdout.includes('tick') ? x : null;
});
assert.ok(r.s.next_since, 'logs says where to go on from');
r = await call('logs', { name, since: r.s.next_since, tail: 0, wait_ms: 5000 });
assert.ok(r.s.stdout.includes('tick'), 'waiting brings new lines');

// secrets: names only, and a run given one by name never shows its value
r = await call('secret_list', {});
assert.ok(r.s.secrets.some((x) => x.name === secret), r.text);
r = await call('run', { argv: ['sh', '-c', `echo "value: $${secret}"`], secrets: [secret] });
assert.equal(r.s.exit_code, 0);
assert.match(r.s.stdout, /value: \S+/, 'the run had the secret');

// an instance given the secret: its value reaches neither exec output, logs nor info
const sname = 'mcp-secret';
r = await call('instance_start', { name: sname, argv: ['sh', '-c', `echo "log: $${secret}"; sleep infinity`], secrets: [secret] });
assert.equal(r.s.state, 'running', r.text);
assert.deepEqual(r.s.secrets, [secret]);
r = await call('exec', { name: sname, argv: ['sh', '-c', `echo "exec: $${secret}"; test -n "$${secret}"`] });
assert.equal(r.s.exit_code, 0, 'the instance has the secret');
assert.match(r.s.stdout, /^exec: \S+/);
await until('the secret instance\'s log', async () => (await call('logs', { name: sname })).s.stdout.includes('log: '));
await call('instance_delete', { name: sname });

// pause and resume
r = await call('pause', { name });
assert.equal(r.s.state, 'paused');
r = await call('instance_info', { name });
assert.equal(r.s.state, 'paused');
r = await call('resume', { name });
assert.equal(r.s.state, 'running');
r = await call('exec', { name, argv: ['true'] });
assert.equal(r.s.exit_code, 0);

// stop keeps it, start brings it back, delete removes it
r = await call('instance_stop', { name });
r = await call('instance_start', { name });
assert.equal(r.s.state, 'running', r.text);
r = await call('instance_list', {});
assert.ok(r.s.instances.some((i) => i.name === name));
r = await call('instance_delete', { name });
assert.equal(r.s.state, 'deleted');
r = await call('instance_info', { name }, { error: true });
assert.match(r.text, /no instance/);

// one-shot runs: output, a limit, a bad argument the model can correct
r = await call('run', { argv: ['sh', '-c', 'echo hello; exit 7'] });
assert.equal(r.s.exit_code, 7);
assert.equal(r.s.stdout, 'hello\n');
r = await call('run', { argv: ['sleep', '10'], timeout_ms: 300 });
assert.equal(r.s.timed_out, true);
r = await call('run', { argv: ['head', '-c', '100000', '/dev/zero'], max_bytes: 1000 });
assert.equal(r.s.stdout_truncated, true);
r = await call('run', { argv: 'not an array' }, { error: true });
assert.match(r.text, /argv/);
await assert.rejects(client.callTool({ name: 'no_such_tool', arguments: {} }), /Unknown tool/);

// nothing that came back holds the secret's value
for (const one of seen)
	assert.ok(!one.includes(canary), `the secret's value came back: ${one.slice(0, 300)}`);

await client.close();
console.log(`mcp client: ${seen.length} tool calls checked`);
