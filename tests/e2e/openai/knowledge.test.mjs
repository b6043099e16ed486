// The enterprise-model flow with the official client: create a knowledge space, upload mixed
// documents (one corrupt), create a derived model over it, ask a question whose answer is in one
// document, and get citations that name that document — plain and streamed.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';

import { client, collectChatStream, serverUrl, tinyModel } from './helpers.mjs';

const openai = client();
const docsDir = process.env.YUNZHI_DOCS_DIR;
assert.ok(docsDir, 'YUNZHI_DOCS_DIR must be set (the C++ driver sets it)');
const auth = { Authorization: `Bearer ${process.env.OPENAI_API_KEY}` };

async function api(method, p, body) {
  const init = { method, headers: { ...auth } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(serverUrl(p), init);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null, text };
}

async function waitForJob(id) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const r = await api('GET', `/api/jobs/${id}`);
    assert.equal(r.status, 200, r.text);
    if (r.body.done === r.body.total) return r.body;
    assert.ok(Date.now() < deadline, `job ${id} did not finish: ${r.text}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const travelPolicy = `# Travel policy

## Hotels

The hotel allowance in Shanghai is 880 yuan per night; in other cities it is 600 yuan.

## Meals

Meals are reimbursed up to 150 yuan per day with receipts.
`;

describe('knowledge spaces and derived models', () => {
  const space = `handbook-${Date.now()}`;
  const model = `acme-assistant-${Date.now()}`;

  test('upload mixed documents, derive a model, answer with citations', async () => {
    const created = await api('POST', '/api/spaces', { name: space, chunk_size: 120, chunk_overlap: 10 });
    assert.equal(created.status, 201, created.text);

    const form = new FormData();
    form.append('file', new Blob([travelPolicy], { type: 'text/markdown' }), 'travel-policy.md');
    for (const rel of ['md/chatchat-llm-inference-opt-zh.md', 'csv/docling-csv-comma.csv',
      'html/tika-testHTML.html', 'docx/docling-lorem_ipsum.docx', 'pdf/unstructured-fake-memo.pdf']) {
      const bytes = await readFile(path.join(docsDir, rel));
      form.append('file', new Blob([bytes]), path.basename(rel));
    }
    form.append('file', new Blob([Buffer.from('%PDF-1.7\n% truncated and corrupt')]), 'corrupt.pdf');
    const upload = await fetch(serverUrl(`/api/spaces/${space}/documents`), {
      method: 'POST', headers: auth, body: form,
    });
    const uploadText = await upload.text();
    assert.equal(upload.status, 202, uploadText);
    const job = await waitForJob(JSON.parse(uploadText).id);
    assert.equal(job.total, 7, JSON.stringify(job));
    assert.equal(job.failed, 1, JSON.stringify(job));
    assert.equal(job.status, 'partial');
    const corrupt = job.files.find((f) => f.name === 'corrupt.pdf');
    assert.equal(corrupt.status, 'failed');
    assert.ok(corrupt.error.length > 0);
    for (const f of job.files) if (f.name !== 'corrupt.pdf') assert.equal(f.status, 'ready', JSON.stringify(f));

    const derived = await api('POST', '/api/models', {
      name: model,
      parent: tinyModel,
      instructions: 'You are the ACME employee assistant.',
      spaces: [space],
      retrieval: { top_k: 2 },
      defaults: { max_tokens: 8 },
    });
    assert.equal(derived.status, 201, derived.text);
    assert.equal(derived.body.base_model, tinyModel);

    const ids = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    assert.ok(ids.includes(model), JSON.stringify(ids));

    const question = [{ role: 'user', content: 'What is the hotel allowance in Shanghai per night?' }];
    const answer = await openai.chat.completions.create({ model, messages: question, temperature: 0 });
    assert.equal(answer.model, model);
    assert.equal(answer.object, 'chat.completion');
    assert.ok(answer.usage.completion_tokens <= 8, JSON.stringify(answer.usage));
    assert.ok(Array.isArray(answer.citations) && answer.citations.length >= 1, JSON.stringify(answer));
    const top = answer.citations[0];
    assert.equal(top.document, 'travel-policy.md');
    assert.equal(top.index, 1);
    assert.match(top.quote, /880 yuan/);
    assert.match(top.section, /Hotels/);
    assert.equal(typeof top.cited, 'boolean');
    // The retrieved passage went into the prompt: it is far longer than the question alone.
    assert.ok(answer.usage.prompt_tokens > 150, JSON.stringify(answer.usage));

    const stream = await openai.chat.completions.create({
      model, messages: question, stream: true, stream_options: { include_usage: true },
    });
    const { chunks } = await collectChatStream(stream);
    const withCitations = chunks.filter((c) => Array.isArray(c.citations));
    assert.equal(withCitations.length, 1);
    assert.equal(withCitations[0].citations[0].document, 'travel-policy.md');
    assert.ok(chunks.at(-1).usage, 'the usage chunk comes last');
  });

  test('a question about another document cites that one', async () => {
    const answer = await openai.chat.completions.create({
      model, messages: [{ role: 'user', content: '大模型推理优化有哪些策略？' }],
    });
    assert.equal(answer.citations[0].document, 'chatchat-llm-inference-opt-zh.md', JSON.stringify(answer.citations));
  });

  test('an unknown derived model is model_not_found', async () => {
    await assert.rejects(
      openai.chat.completions.create({ model: `${model}-nope`, messages: [{ role: 'user', content: 'hi' }] }),
      (e) => e.status === 404 && e.code === 'model_not_found',
    );
  });
});

describe('ingestion is metered', () => {
  test('a space with an embedding model records the tokens its chunks cost', async () => {
    const embedModel = process.env.YUNZHI_EMBED_MODEL;
    assert.ok(embedModel, 'YUNZHI_EMBED_MODEL must be set (the C++ driver sets it)');
    const space = `embedded-${Date.now()}`;
    const created = await api('POST', '/api/spaces', { name: space, embedding_model: embedModel });
    assert.equal(created.status, 201, created.text);
    const form = new FormData();
    form.append('file', new Blob([travelPolicy], { type: 'text/markdown' }), 'travel-policy.md');
    const upload = await fetch(serverUrl(`/api/spaces/${space}/documents`), { method: 'POST', headers: auth, body: form });
    const uploadText = await upload.text();
    assert.equal(upload.status, 202, uploadText);
    const job = await waitForJob(JSON.parse(uploadText).id);
    assert.equal(job.status, 'succeeded', JSON.stringify(job));
    // Usage records are committed a few milliseconds after the work (see platform/metering.h).
    const deadline = Date.now() + 20_000;
    for (;;) {
      const usage = await api('GET', '/api/usage?group_by=model');
      assert.equal(usage.status, 200, usage.text);
      const row = usage.body.data.find((g) => g.model === embedModel && g.kind === 'embedding_tokens');
      if (row) {
        assert.ok(row.prompt_tokens > 10, JSON.stringify(row));
        break;
      }
      assert.ok(Date.now() < deadline, `no embedding_tokens record for ${embedModel}: ${usage.text}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
});
