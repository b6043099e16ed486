// Shared by the *.test.mjs files: the client and the models the C++ driver
// (tests/e2e/openai_sdk_test.cc) imported into the server it started.
//
// Environment: OPENAI_BASE_URL (http://127.0.0.1:PORT/v1) and OPENAI_API_KEY, read by the openai
// client itself; YUNZHI_CHAT_MODEL (stories260K: real weights, for text) and YUNZHI_TINY_MODEL
// (random weights with a ChatML template, for grammar-constrained output).
import assert from 'node:assert/strict';

import Ajv from 'ajv';
import OpenAI from 'openai';

function required(name) {
  const value = process.env[name];
  assert.ok(value, `${name} must be set (the C++ driver sets it)`);
  return value;
}

export const chatModel = required('YUNZHI_CHAT_MODEL');
export const tinyModel = required('YUNZHI_TINY_MODEL');
required('OPENAI_BASE_URL');
required('OPENAI_API_KEY');

// No retries: a failure must show at once, not after the SDK's back-off.
export function client(options = {}) {
  return new OpenAI({ maxRetries: 0, timeout: 120_000, ...options });
}

// The server root (the /tokenize helpers live outside /v1, as in vLLM).
export function serverUrl(path) {
  return new URL(path, new URL(process.env.OPENAI_BASE_URL).origin).toString();
}

export async function postJson(path, body) {
  const response = await fetch(serverUrl(path), {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${process.env.OPENAI_API_KEY}`,
      'Content-Type': 'application/json',
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `${path}: ${text}`);
  return JSON.parse(text);
}

// A JSON Schema validator (draft 2020-12 subset that Structured Outputs uses).
export function validator(schema) {
  const ajv = new Ajv({ allErrors: true, strict: false });
  return ajv.compile(schema);
}

// Collects a chat stream: the chunks, the text of choice 0 and the usage chunk.
export async function collectChatStream(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  let text = '';
  for (const c of chunks) for (const choice of c.choices) if (choice.index === 0) text += choice.delta?.content ?? '';
  return { chunks, text };
}

export function assertUsage(usage) {
  assert.ok(usage, 'usage is present');
  assert.ok(Number.isInteger(usage.prompt_tokens) && usage.prompt_tokens > 0, JSON.stringify(usage));
  assert.ok(Number.isInteger(usage.completion_tokens) && usage.completion_tokens >= 0);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}
