// /v1/chat/completions with stories260K: streaming and not, usage, logprobs, stop, max_tokens.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { assertUsage, chatModel, client, collectChatStream } from './helpers.mjs';

const openai = client();
const messages = [{ role: 'user', content: 'Once upon a time, there was a little girl named Lily.' }];

describe('chat completions', () => {
  test('greedy text is the same streamed and not streamed', async () => {
    const request = { model: chatModel, messages, temperature: 0, max_tokens: 24 };
    const full = await openai.chat.completions.create(request);
    assert.equal(full.object, 'chat.completion');
    assert.match(full.id, /^chatcmpl-/);
    assert.equal(full.model, chatModel);
    assert.ok(Number.isInteger(full.created));
    assert.equal(full.choices.length, 1);
    const choice = full.choices[0];
    assert.equal(choice.index, 0);
    assert.equal(choice.message.role, 'assistant');
    assert.equal(typeof choice.message.content, 'string');
    assert.ok(choice.message.content.length > 0, 'some text was generated');
    assert.ok(['stop', 'length'].includes(choice.finish_reason), choice.finish_reason);
    assert.equal(choice.logprobs, null);
    assertUsage(full.usage);

    const stream = await openai.chat.completions.create({
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    const { chunks, text } = await collectChatStream(stream);
    assert.equal(text, choice.message.content);
    assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.id, chunks[0].id, 'every chunk has the same id');
      assert.equal(c.created, chunks[0].created);
      assert.equal(c.model, chatModel);
    }
    assert.match(chunks[0].id, /^chatcmpl-/);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const finishes = chunks.flatMap((c) => c.choices).filter((ch) => ch.finish_reason !== null);
    assert.equal(finishes.length, 1, 'exactly one finish_reason');
    assert.equal(finishes[0].finish_reason, choice.finish_reason);
    // include_usage: the last chunk has no choices and the usage; the others have usage null.
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.prompt_tokens, full.usage.prompt_tokens);
    assert.equal(last.usage.completion_tokens, full.usage.completion_tokens);
    assert.equal(last.usage.total_tokens, full.usage.total_tokens);
    // The same prompt again: its full blocks come from the prefix cache.
    assert.equal(full.usage.prompt_tokens_details.cached_tokens, 0);
    assert.ok(last.usage.prompt_tokens_details.cached_tokens > 0, 'prefix cache hit');
    assert.ok(last.usage.prompt_tokens_details.cached_tokens < last.usage.prompt_tokens);
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
  });

  test('without include_usage no chunk carries usage', async () => {
    const stream = await openai.chat.completions.create({
      model: chatModel, messages, temperature: 0, max_tokens: 4, stream: true,
    });
    const { chunks } = await collectChatStream(stream);
    for (const c of chunks) {
      assert.ok(c.usage === undefined || c.usage === null);
      assert.equal(c.choices.length, 1);
    }
  });

  test('max_tokens ends with finish_reason length and counts the tokens', async () => {
    const r = await openai.chat.completions.create({
      model: chatModel, messages, temperature: 0, max_tokens: 3,
    });
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 3);
    assertUsage(r.usage);
    const newer = await openai.chat.completions.create({
      model: chatModel, messages, temperature: 0, max_tokens: 50, max_completion_tokens: 2,
    });
    assert.equal(newer.choices[0].finish_reason, 'length');
    assert.equal(newer.usage.completion_tokens, 2, 'max_completion_tokens wins over max_tokens');
  });

  test('logprobs: one entry per generated token, with top_logprobs', async () => {
    const r = await openai.chat.completions.create({
      model: chatModel, messages, temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 3,
    });
    const { content } = r.choices[0].logprobs;
    assert.equal(content.length, r.usage.completion_tokens);
    assert.equal(r.choices[0].logprobs.refusal, null);
    let joined = [];
    for (const entry of content) {
      assert.equal(typeof entry.token, 'string');
      assert.ok(entry.logprob <= 0, `logprob ${entry.logprob}`);
      assert.ok(Array.isArray(entry.bytes) && entry.bytes.every((b) => Number.isInteger(b) && b >= 0 && b < 256));
      assert.equal(entry.top_logprobs.length, 3);
      for (const alt of entry.top_logprobs) {
        assert.equal(typeof alt.token, 'string');
        assert.ok(alt.logprob <= 0);
        assert.ok(Array.isArray(alt.bytes));
      }
      // Greedy: the chosen token is the most likely one.
      assert.ok(Math.abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-4);
      assert.ok(entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob);
      joined = joined.concat(entry.bytes);
    }
    // The bytes of the tokens spell the message (up to the leading space of a first SentencePiece
    // token, which detokenizers may drop).
    assert.equal(Buffer.from(joined).toString('utf8').trim(), r.choices[0].message.content.trim());
  });

  test('streamed logprobs match the generated tokens', async () => {
    const stream = await openai.chat.completions.create({
      model: chatModel, messages, temperature: 0, max_tokens: 6, logprobs: true, top_logprobs: 2,
      stream: true, stream_options: { include_usage: true },
    });
    const { chunks } = await collectChatStream(stream);
    const entries = chunks.flatMap((c) => c.choices).flatMap((ch) => ch.logprobs?.content ?? []);
    assert.equal(entries.length, chunks.at(-1).usage.completion_tokens);
    for (const e of entries) assert.equal(e.top_logprobs.length, 2);
  });

  test('a stop string ends the text before it', async () => {
    const base = await openai.chat.completions.create({
      model: chatModel, messages, temperature: 0, max_tokens: 32,
    });
    const text = base.choices[0].message.content;
    assert.ok(text.length >= 12, `need some text to cut: ${JSON.stringify(text)}`);
    const stop = text.slice(8, 11);
    const expected = text.slice(0, text.indexOf(stop));
    const cut = await openai.chat.completions.create({
      model: chatModel, messages, temperature: 0, max_tokens: 32, stop: [stop, 'zzzz-never'],
    });
    assert.equal(cut.choices[0].message.content, expected);
    assert.equal(cut.choices[0].finish_reason, 'stop');
    const streamed = await collectChatStream(await openai.chat.completions.create({
      model: chatModel, messages, temperature: 0, max_tokens: 32, stop, stream: true,
    }));
    assert.equal(streamed.text, expected, 'a stop string split across tokens is held back');
  });

  test('n choices come with their indices', async () => {
    const r = await openai.chat.completions.create({
      model: chatModel, messages, temperature: 0, max_tokens: 5, n: 2,
    });
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
    assert.equal(r.choices[0].message.content, r.choices[1].message.content, 'greedy twice');
    if (r.choices[0].finish_reason === 'length') assert.equal(r.usage.completion_tokens, 10);
  });

  test('the same seed gives the same sample', async () => {
    const request = { model: chatModel, messages, temperature: 1, seed: 1234, max_tokens: 12 };
    const a = await openai.chat.completions.create(request);
    const b = await openai.chat.completions.create(request);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  });

  test('a conversation with system, developer and content parts', async () => {
    const r = await openai.chat.completions.create({
      model: chatModel,
      temperature: 0,
      max_tokens: 4,
      messages: [
        { role: 'system', content: 'You tell stories.' },
        { role: 'developer', content: [{ type: 'text', text: 'Short ones.' }] },
        { role: 'user', content: [{ type: 'text', text: 'Once upon' }, { type: 'text', text: 'a time' }] },
        { role: 'assistant', content: 'there was a cat.' },
        { role: 'user', content: 'Go on.' },
      ],
    });
    assert.equal(typeof r.choices[0].message.content, 'string');
    assertUsage(r.usage);
  });
});
