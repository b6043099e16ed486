// Tool calls on a random-weight model: tool_choice "required" / named forces a call whose
// arguments follow the function's schema; the tool result then goes back in a follow-up request.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { assertUsage, client, tinyModel, validator } from './helpers.mjs';

const openai = client();

const weatherParameters = {
  type: 'object',
  properties: {
    city: { type: 'string', maxLength: 30 },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
  },
  required: ['city', 'unit'],
  additionalProperties: false,
};
const tools = [
  {
    type: 'function',
    function: { name: 'get_weather', description: 'The weather in a city', parameters: weatherParameters, strict: true },
  },
  {
    type: 'function',
    function: {
      name: 'get_time',
      description: 'The time in a time zone',
      parameters: { type: 'object', properties: { zone: { type: 'string', maxLength: 30 } }, required: ['zone'] },
    },
  },
];
const question = [{ role: 'user', content: 'What is the weather in Paris?' }];

function checkCall(call) {
  assert.equal(call.type, 'function');
  assert.equal(typeof call.id, 'string');
  assert.ok(call.id.length > 0);
  const tool = tools.find((t) => t.function.name === call.function.name);
  assert.ok(tool, `unknown function ${call.function.name}`);
  const args = JSON.parse(call.function.arguments);
  const validate = validator(tool.function.parameters);
  assert.ok(validate(args), `${call.function.arguments}: ${JSON.stringify(validate.errors)}`);
}

describe('tool calls', () => {
  test('tool_choice required gives parseable tool calls, and the result can be sent back', async () => {
    const r = await openai.chat.completions.create({
      model: tinyModel, messages: question, tools, tool_choice: 'required', seed: 3, max_tokens: 200,
    });
    const choice = r.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.role, 'assistant');
    assert.ok(choice.message.tool_calls?.length >= 1, JSON.stringify(choice.message));
    assert.ok(choice.message.content === null || typeof choice.message.content === 'string');
    for (const call of choice.message.tool_calls) checkCall(call);
    assertUsage(r.usage);

    const followUp = await openai.chat.completions.create({
      model: tinyModel,
      messages: [
        ...question,
        choice.message,
        ...choice.message.tool_calls.map((call) => ({
          role: 'tool', tool_call_id: call.id, content: JSON.stringify({ temperature: 21, unit: 'celsius' }),
        })),
      ],
      tools,
      max_tokens: 8,
      seed: 4,
    });
    assert.ok(['stop', 'length', 'tool_calls'].includes(followUp.choices[0].finish_reason));
    assert.ok(followUp.usage.prompt_tokens > r.usage.prompt_tokens, 'the history was sent');
  });

  test('a named tool_choice calls that function', async () => {
    const r = await openai.chat.completions.create({
      model: tinyModel,
      messages: question,
      tools,
      tool_choice: { type: 'function', function: { name: 'get_time' } },
      parallel_tool_calls: false,
      seed: 5,
      max_tokens: 200,
    });
    const calls = r.choices[0].message.tool_calls;
    assert.equal(calls.length, 1);
    assert.equal(calls[0].function.name, 'get_time');
    checkCall(calls[0]);
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
  });

  test('streamed tool calls assemble into the same shape', async () => {
    const stream = await openai.chat.completions.create({
      model: tinyModel, messages: question, tools, tool_choice: 'required', seed: 3, max_tokens: 200, stream: true,
    });
    const calls = [];
    let finish = null;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        for (const d of c.delta?.tool_calls ?? []) {
          calls[d.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
          if (d.id) calls[d.index].id = d.id;
          if (d.function?.name) calls[d.index].function.name += d.function.name;
          if (d.function?.arguments) calls[d.index].function.arguments += d.function.arguments;
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.equal(finish, 'tool_calls');
    assert.ok(calls.length >= 1);
    for (const call of calls) checkCall(call);
  });

  test('tool_choice none answers in text', async () => {
    const r = await openai.chat.completions.create({
      model: tinyModel, messages: question, tools, tool_choice: 'none', max_tokens: 6, seed: 1,
    });
    assert.equal(r.choices[0].message.tool_calls ?? undefined, undefined);
    assert.notEqual(r.choices[0].finish_reason, 'tool_calls');
  });
});
