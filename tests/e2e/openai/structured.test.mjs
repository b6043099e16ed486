// response_format on a random-weight model: only grammar-constrained decoding can make its output
// parse, so a pass here means the constraint works, not that the model is good at JSON.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { assertUsage, client, tinyModel, validator } from './helpers.mjs';

const openai = client();

const personSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 20 },
    age: { type: 'integer', minimum: 0, maximum: 150 },
    pets: { type: 'array', items: { type: 'string', enum: ['cat', 'dog', 'fish'] }, maxItems: 3 },
    married: { type: 'boolean' },
  },
  required: ['name', 'age', 'pets', 'married'],
  additionalProperties: false,
};

describe('structured output', () => {
  for (const seed of [1, 2, 3]) {
    test(`json_schema output parses and validates (seed ${seed})`, async () => {
      const r = await openai.chat.completions.create({
        model: tinyModel,
        messages: [{ role: 'user', content: 'Describe a person as JSON.' }],
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'person', schema: personSchema, strict: true },
        },
        temperature: 1,
        seed,
        max_tokens: 300,
      });
      const { content } = r.choices[0].message;
      assert.equal(r.choices[0].finish_reason, 'stop', `finished early: ${content}`);
      const value = JSON.parse(content);
      const validate = validator(personSchema);
      assert.ok(validate(value), `${content}: ${JSON.stringify(validate.errors)}`);
      assertUsage(r.usage);
    });
  }

  test('json_schema output streamed', async () => {
    const stream = await openai.chat.completions.create({
      model: tinyModel,
      messages: [{ role: 'user', content: 'A person, please.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: personSchema, strict: true } },
      seed: 7,
      max_tokens: 300,
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) for (const c of chunk.choices) text += c.delta?.content ?? '';
    assert.ok(validator(personSchema)(JSON.parse(text)), text);
  });

  test('json_object output is a JSON object', async () => {
    const r = await openai.chat.completions.create({
      model: tinyModel,
      messages: [{ role: 'user', content: 'Reply in JSON.' }],
      response_format: { type: 'json_object' },
      seed: 11,
      max_tokens: 200,
    });
    const { content } = r.choices[0].message;
    assert.equal(r.choices[0].finish_reason, 'stop', `finished early: ${content}`);
    const value = JSON.parse(content);
    assert.equal(typeof value, 'object');
    assert.ok(value !== null && !Array.isArray(value), content);
  });
});
