// /v1/embeddings through the official client: floats and the client's default base64, unit
// norms, identical inputs giving identical vectors, dimensions, and a 400 for a chat model.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import OpenAI from 'openai';

import { chatModel, client, postJson } from './helpers.mjs';

const embedModel = process.env.YUNZHI_EMBED_MODEL;
assert.ok(embedModel, 'YUNZHI_EMBED_MODEL must be set (the C++ driver sets it)');
const rerankModel = process.env.YUNZHI_RERANK_MODEL;
assert.ok(rerankModel, 'YUNZHI_RERANK_MODEL must be set (the C++ driver sets it)');

const openai = client();

function norm(v) {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

describe('embeddings', () => {
  test('float vectors: shape, unit norm, identical inputs identical', async () => {
    const r = await openai.embeddings.create({
      model: embedModel,
      input: ['hello world', 'the cat', 'hello world'],
      encoding_format: 'float',
    });
    assert.equal(r.object, 'list');
    assert.equal(r.model, embedModel);
    assert.equal(r.data.length, 3);
    r.data.forEach((d, i) => {
      assert.equal(d.object, 'embedding');
      assert.equal(d.index, i);
      assert.ok(Array.isArray(d.embedding));
      assert.equal(d.embedding.length, 64);
      assert.ok(Math.abs(norm(d.embedding) - 1) < 1e-4, `norm ${norm(d.embedding)}`);
    });
    assert.deepEqual(r.data[0].embedding, r.data[2].embedding);
    assert.notDeepEqual(r.data[0].embedding, r.data[1].embedding);
    assert.ok(r.usage.prompt_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens);
  });

  test('the default (base64 on the wire) decodes to the same floats', async () => {
    const asFloat = await openai.embeddings.create({
      model: embedModel, input: 'hello world', encoding_format: 'float' });
    // Without encoding_format the npm client asks for base64 and decodes it itself.
    const byDefault = await openai.embeddings.create({ model: embedModel, input: 'hello world' });
    assert.equal(byDefault.data.length, 1);
    const a = asFloat.data[0].embedding;
    const b = byDefault.data[0].embedding;
    assert.equal(b.length, a.length);
    for (let i = 0; i < a.length; i++) {
      assert.ok(Math.abs(a[i] - b[i]) < 1e-6, `value ${i}: ${a[i]} vs ${b[i]}`);
    }
    assert.ok(Math.abs(norm(b) - 1) < 1e-4);
  });

  test('dimensions cuts and renormalises', async () => {
    const r = await openai.embeddings.create({ model: embedModel, input: 'hello', dimensions: 16 });
    assert.equal(r.data[0].embedding.length, 16);
    assert.ok(Math.abs(norm(r.data[0].embedding) - 1) < 1e-4);
  });

  test('a chat model or an empty input is a 400', async () => {
    await assert.rejects(openai.embeddings.create({ model: chatModel, input: 'hello' }),
                         (e) => e instanceof OpenAI.BadRequestError && /chat model/.test(e.message));
    await assert.rejects(openai.embeddings.create({ model: embedModel, input: [] }),
                         (e) => e instanceof OpenAI.BadRequestError && e.param === 'input');
  });
});

describe('rerank', () => {
  test('Jina/Cohere shape, best first, top_n', async () => {
    const documents = ['paris is the capital of france', { text: 'the cat' }, 'hello world'];
    const r = await postJson('/v1/rerank', {
      model: rerankModel, query: 'what is the capital of france?', documents });
    assert.equal(r.model, rerankModel);
    assert.equal(r.results.length, 3);
    assert.deepEqual(r.results.map((x) => x.index).sort(), [0, 1, 2]);
    for (let i = 1; i < r.results.length; i++) {
      assert.ok(r.results[i - 1].relevance_score >= r.results[i].relevance_score);
    }
    for (const x of r.results) {
      assert.ok(x.relevance_score > 0 && x.relevance_score < 1);
      assert.equal(typeof x.document.text, 'string');
    }
    assert.ok(r.usage.total_tokens > 0);
    const top = await postJson('/v1/rerank', {
      model: rerankModel, query: 'what is the capital of france?', documents, top_n: 1 });
    assert.equal(top.results.length, 1);
    assert.equal(top.results[0].index, r.results[0].index);
  });
});
