"""Generate (and optionally execute) the demo notebooks, so they stay reproducible.

    .venv/bin/python notebooks/build.py            # write the notebooks, executed, outputs normalised
    .venv/bin/python notebooks/build.py --no-run   # write them without outputs
    .venv/bin/python notebooks/build.py --check    # fail if a committed notebook's code differs

The notebooks are the source of truth for readers, this file for maintainers: edit the
cells here, rerun, commit both. Committed notebooks are executed and *normalised*, so a
reader on GitHub sees the transcript without running anything, and a rerun gives the same
bytes: no execution timings, fixed cell ids, the collector's random port replaced by
``PORT``, stderr dropped, kernel metadata reduced to its name.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
DB_ENV = "GF_NOTEBOOK_DB"  # the tests set it to read what the notebook's collector stored

COLLECTOR_CELL = f'''\
import os

import gf_integrations as gf
from gf_integrations.collector import start_collector

# A local Greenflash-compatible collector (SQLite + viewer) on a free loopback port.
collector = start_collector(os.environ.get("{DB_ENV}"))
gf.configure(base_url=collector.base_url)  # every integration records through this client
print("viewer:", collector.url)'''
# The framework notebooks end by rating an answer: ratings and events name a product.
RATED_COLLECTOR_CELL = COLLECTOR_CELL.replace(
    "gf.configure(base_url=collector.base_url)",
    'gf.configure(base_url=collector.base_url, product_id="demo")',
)


def rating_cell(calls: str, conversation: str) -> Any:
    """A cell that runs ``calls`` (gf.rate / gf.track_event), then prints what the
    collector stored for the conversation's ratings and events."""
    report = f'''
        gf.flush()
        contents = {{m["id"]: m["content"] for m in collector.messages("{conversation}")}}
        for r in collector.ratings("{conversation}"):
            print(f"rated {{r['rating']:g}}/{{r['ratingMax']:g}} ({{r['feedback']}}): {{contents[r['messageId']]}}")
        print("events:", [(e["eventType"], e["value"]) for e in collector.events("{conversation}")])'''
    return code(textwrap.dedent(calls).strip() + "\n" + textwrap.dedent(report))


def md(text: str) -> Any:
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str) -> Any:
    return new_code_cell(textwrap.dedent(text).strip())


def langchain_notebook() -> list[Any]:
    return [
        md("""
        # LangChain and LangGraph → Greenflash

        Two things a LangChain app typically does, recorded with
        `GreenflashCallbackHandler`: a prompt-template chat that keeps its history, then a
        LangGraph agent that calls tools and a retriever. Everything runs offline: the
        models are LangChain's `GenericFakeChatModel` with scripted replies, and the
        conversations go to a local collector started in the next cell.

        **Real API and model instead:** set `GREENFLASH_API_KEY`, replace the collector cell with `import gf_integrations as gf; gf.configure(product_id="your-product")`, and `fake_chat_model([...])` with e.g. `ChatOpenAI(model="gpt-4o-mini")`.
        """),
        code(RATED_COLLECTOR_CELL),
        md("""
        ## 1. A prompt-template chat with history

        `RunnableWithMessageHistory` resends the whole history on every turn; Greenflash
        stores each message once. The system prompt comes from a `ChatPromptTemplate`, so
        it is sent as a template (`{{company}}`) with its variables.
        """),
        code("""
        from _helpers import fake_chat_model
        from langchain_core.chat_history import InMemoryChatMessageHistory
        from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
        from langchain_core.runnables.history import RunnableWithMessageHistory

        from gf_integrations.langchain import GreenflashCallbackHandler

        model = fake_chat_model([
            "April in Lisbon is mild: 15-22 °C, with the odd shower. Pack a light jacket.",
            "Take tram 28 early in the morning, before the crowds, and walk down to the river.",
        ])
        prompt = ChatPromptTemplate.from_messages([
            ("system", "You are a travel assistant for {company}. Answer in two sentences."),
            MessagesPlaceholder("history"),
            ("human", "{question}"),
        ])
        histories = {}
        chat = RunnableWithMessageHistory(
            prompt | model,
            lambda session_id: histories.setdefault(session_id, InMemoryChatMessageHistory()),
            input_messages_key="question",
            history_messages_key="history",
        )
        handler = GreenflashCallbackHandler(external_user_id="alice")

        # Everything inside gf.conversation(...) lands in one Greenflash conversation.
        with gf.conversation("trip-42"):
            for question in ["What is Lisbon like in April?", "Any tip for getting around?"]:
                reply = chat.invoke(
                    {"company": "Acme Travel", "question": question},
                    config={"callbacks": [handler], "configurable": {"session_id": "trip-42"}},
                )
                print(f"> {question}\\n{reply.content}")
        """),
        md("""
        ## 2. A LangGraph agent with tools and a retriever

        A small ReAct-style graph: the model asks for `search_docs` (a retriever wrapped as a
        tool) and `order_status`, then answers. The LangGraph `thread_id` becomes the
        Greenflash conversation id, so later turns of the same thread join it.
        """),
        code("""
        import uuid

        from _helpers import keyword_retriever
        from langchain_core.messages import AIMessage, SystemMessage
        from langchain_core.tools import create_retriever_tool, tool
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph.graph import START, MessagesState, StateGraph
        from langgraph.prebuilt import ToolNode, tools_condition

        retriever = keyword_retriever({
            "kb/refunds": "Refunds are paid to the original card within 14 days of the return.",
            "kb/shipping": "Orders ship from Lisbon; delivery in the EU takes 2-4 days.",
            "kb/returns": "Returns are free for 30 days; print the label from your account.",
        })
        search_docs = create_retriever_tool(retriever, "search_docs", "Search Acme's help center.")

        @tool
        def order_status(order_id: str) -> str:
            \"\"\"Look up where an order is.\"\"\"
            return f"Order {order_id} shipped on Monday and arrives on Friday."

        tools = [search_docs, order_status]
        agent_model = fake_chat_model([
            AIMessage("", tool_calls=[{"name": "search_docs", "args": {"query": "refunds"}, "id": "call_1"}]),
            AIMessage("", tool_calls=[{"name": "order_status", "args": {"order_id": "A-1001"}, "id": "call_2"}]),
            AIMessage("Refunds reach your card within 14 days of the return, and order A-1001 arrives on Friday."),
        ]).bind_tools(tools)

        def call_model(state: MessagesState) -> dict:
            system = SystemMessage("You are Acme's support agent. Use the tools.")
            return {"messages": [agent_model.invoke([system, *state["messages"]])]}

        graph = StateGraph(MessagesState)
        graph.add_node("agent", call_model)
        graph.add_node("tools", ToolNode(tools))
        graph.add_edge(START, "agent")
        graph.add_conditional_edges("agent", tools_condition)
        graph.add_edge("tools", "agent")
        agent = graph.compile(checkpointer=InMemorySaver())

        run_id = uuid.uuid4()  # names this run, so that its answer can be rated below
        result = agent.invoke(
            {"messages": [("user", "How do refunds work, and where is my order A-1001?")]},
            config={
                "callbacks": [GreenflashCallbackHandler(external_user_id="bob")],
                "configurable": {"thread_id": "support-7"},
                "run_id": run_id,
            },
        )
        print(result["messages"][-1].content)
        """),
        md("""
        ## 3. The user rates the answer

        `gf.rate` takes the run id given to `invoke` and rates the answer that run produced;
        `gf.track_event` ties a business outcome to the same conversation. Both only queue:
        they travel with the messages, after them.
        """),
        rating_cell(
            """
            gf.rate(run_id, 1, rating_min=0, rating_max=1, feedback="found my order at once")
            gf.track_event("ticket_resolved", True, conversation=run_id, influence="positive")
            """,
            "support-7",
        ),
        md("""
        ## What Greenflash received

        `show` flushes the uploader and renders what the collector stored: message types,
        tool calls with their input, observations, the retrieval, the system prompt with its
        components and variables. The link opens the same conversation in the viewer.
        """),
        code("""
        from gf_integrations.notebook import show

        show(collector, "trip-42")
        """),
        code("""
        show(collector, "support-7")
        """),
    ]


def openai_notebook() -> list[Any]:
    return [
        md("""
        # OpenAI client → Greenflash

        `wrap_openai(client)` instruments an `OpenAI` client in place (same object, same
        types): chat completions, streaming, tool calls and the Responses API are recorded.
        Offline here: the client's HTTP goes to an `httpx.MockTransport` that answers like
        the API, and the conversations go to a local collector.

        **Real API and model instead:** set `GREENFLASH_API_KEY` and `OPENAI_API_KEY`, replace the collector cell with `import gf_integrations as gf; gf.configure(product_id="your-product")`, and `fake_openai_client()` with `OpenAI()`.
        """),
        code(RATED_COLLECTOR_CELL),
        md("""
        ## 1. Chat, then streaming, in one conversation

        A stateless chat app resends its growing history; each message is stored once.
        """),
        code("""
        from _helpers import fake_openai_client

        from gf_integrations.openai import wrap_openai

        client = wrap_openai(fake_openai_client(), external_user_id="alice")

        with gf.conversation("geo-chat"):
            history = [
                {"role": "system", "content": "You are a concise geography tutor."},
                {"role": "user", "content": "What is the capital of Portugal?"},
            ]
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=history)
            print(reply.choices[0].message.content)

            history += [
                {"role": "assistant", "content": reply.choices[0].message.content},
                {"role": "user", "content": "And the capital of Japan?"},
            ]
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=history, stream=True)
            print("".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))
        """),
        md("""
        ## 2. Tool calls

        The model asks for `get_weather`; the app runs it and sends the result back as a
        `tool` message. Greenflash gets a `tool_call`, its `observation`, and the final answer.
        """),
        code("""
        import json


        def get_weather(city: str) -> str:
            return f"Sunny and 24 °C in {city}."


        tools = [{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }]
        with gf.conversation("weather-bot"):
            messages = [{"role": "user", "content": "Should I pack sunglasses for Rome today?"}]
            first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
            call = first.choices[0].message.tool_calls[0]
            messages.append(first.choices[0].message.model_dump(exclude_none=True))
            messages.append({
                "role": "tool",
                "tool_call_id": call.id,
                "content": get_weather(**json.loads(call.function.arguments)),
            })
            final = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
            print(final.choices[0].message.content)
        """),
        md("""
        ## 3. The Responses API

        `instructions` become the system prompt. (Without `gf.conversation`, a
        `previous_response_id` chain would keep these turns in one conversation too.)
        """),
        code("""
        with gf.conversation("capitals-quiz"):
            rules = "Answer with the city only."  # instructions are not carried over: resend them
            first = client.responses.create(model="gpt-4o-mini", instructions=rules, input="Capital of Italy?")
            second = client.responses.create(
                model="gpt-4o-mini", instructions=rules, input="And of Germany?", previous_response_id=first.id
            )
        print(first.output_text, "|", second.output_text)
        """),
        md("""
        ## 4. The user rates the answer

        `gf.rate` takes the response object (or its `id`) and rates the answer it carried.
        """),
        rating_cell(
            """
            gf.rate(second, 1, rating_min=0, rating_max=1, feedback="right city")
            """,
            "capitals-quiz",
        ),
        md("""
        ## What Greenflash received
        """),
        code("""
        from gf_integrations.notebook import show

        show(collector, "geo-chat")
        """),
        code("""
        show(collector, "weather-bot")
        """),
        code("""
        show(collector, "capitals-quiz")
        """),
    ]


def llamaindex_notebook() -> list[Any]:
    return [
        md("""
        # LlamaIndex → Greenflash

        `GreenflashInstrumentor().instrument()` hooks LlamaIndex's instrumentation
        dispatcher once for the whole process: query engines, retrievals, LLM calls and
        agents are recorded. Offline here: a fake LLM and a keyword embedding model
        (subclasses of LlamaIndex's `MockLLM` / `MockEmbedding`), and LlamaIndex's own
        `MockFunctionCallingLLM` scripted for the agent.

        **Real API and model instead:** set `GREENFLASH_API_KEY`, replace the collector cell with `import gf_integrations as gf; gf.configure(product_id="your-product")`, and the fakes with e.g. `OpenAI(model="gpt-4o-mini")` and `OpenAIEmbedding()`.
        """),
        code(RATED_COLLECTOR_CELL),
        code("""
        from gf_integrations.llamaindex import GreenflashInstrumentor

        GreenflashInstrumentor(external_user_id="carol").instrument()  # once per process
        print("LlamaIndex is instrumented")
        """),
        md("""
        ## 1. A query engine over a small index

        The retrieved nodes are stored as a `retrieval` message and as the answer's `context`.
        """),
        code("""
        from _helpers import fake_llm, keyword_embedding
        from llama_index.core import Settings, VectorStoreIndex
        from llama_index.core.schema import TextNode

        Settings.llm = fake_llm()
        Settings.embed_model = keyword_embedding()
        index = VectorStoreIndex([
            TextNode(id_="x2-battery", text="The Acme X2 battery lasts 18 hours and charges fully in 90 minutes."),
            TextNode(id_="x2-specs", text="The Acme X2 weighs 1.2 kg and has a 14-inch screen."),
            TextNode(id_="warranty", text="Acme laptops come with a two-year warranty."),
        ])
        query_engine = index.as_query_engine(similarity_top_k=2)

        with gf.conversation("x2-questions"):
            print(query_engine.query("How long does the X2 battery last?"))
        """),
        md("""
        ## 2. A FunctionAgent with a working and a failing tool

        The agent swallows the tool's exception and carries on; Greenflash gets a
        `tool_error` next to the `observation` of the tool that worked.
        """),
        code("""
        from _helpers import fake_agent_llm
        from llama_index.core.agent.workflow import FunctionAgent


        def get_weather(city: str) -> str:
            \"\"\"Current weather in a city.\"\"\"
            return f"Sunny and 24 °C in {city}."

        def book_table(city: str) -> str:
            \"\"\"Book a table for tonight.\"\"\"
            raise RuntimeError("no tables left tonight")

        agent = FunctionAgent(
            tools=[get_weather, book_table],
            llm=fake_agent_llm(
                [("get_weather", {"city": "Rome"}), ("book_table", {"city": "Rome"})],
                "It is sunny in Rome, but I could not book a table: none are left tonight.",
            ),
            system_prompt="You are a concierge. Use the tools.",
        )
        with gf.conversation("concierge-1"):
            result = await agent.run("What's the weather in Rome, and can you book a table?")
        print(result)
        """),
        md("""
        ## 3. The user rates the answer

        `gf.rate` takes what the agent returned (a query engine's `Response` works the same).
        """),
        rating_cell(
            """
            gf.rate(result, 2, rating_min=1, rating_max=5, feedback="no table, sadly")
            gf.track_event("booking_failed", "Rome", conversation=result, influence="negative")
            """,
            "concierge-1",
        ),
        md("""
        ## What Greenflash received
        """),
        code("""
        from gf_integrations.notebook import show

        show(collector, "x2-questions")
        """),
        code("""
        show(collector, "concierge-1")
        """),
    ]


def anthropic_notebook() -> list[Any]:
    return [
        md("""
        # Anthropic client → Greenflash

        `wrap_anthropic(client)` instruments an `Anthropic` client in place (same object,
        same types): `messages.create`, streaming (`stream=True` and the
        `messages.stream(...)` helper), tool use and extended thinking are recorded.
        Offline here: the client's HTTP goes to an `httpx2.MockTransport` serving the test
        suite's fake Messages API, and the conversations go to a local collector.

        **Real API and model instead:** set `GREENFLASH_API_KEY` and `ANTHROPIC_API_KEY`, replace the collector cell with `import gf_integrations as gf; gf.configure()`, and `fake_anthropic_client()` with `Anthropic()`.
        """),
        code(COLLECTOR_CELL),
        md("""
        ## 1. Chat, then the streaming helper, in one conversation

        The app resends its growing history; each message is stored once. `system`
        becomes the conversation's system prompt.
        """),
        code("""
        from _helpers import fake_anthropic_client

        from gf_integrations.anthropic import wrap_anthropic

        client = wrap_anthropic(fake_anthropic_client(), external_user_id="alice")
        tutor = "You are a concise geography tutor."

        with gf.conversation("claude-geo"):
            history = [{"role": "user", "content": "What is the capital of Portugal?"}]
            reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=512, system=tutor, messages=history)
            print(reply.content[0].text)

            history += [
                {"role": "assistant", "content": reply.content},
                {"role": "user", "content": "And the capital of Japan?"},
            ]
            with client.messages.stream(model="claude-sonnet-4-6", max_tokens=512, system=tutor, messages=history) as stream:
                print("".join(stream.text_stream))
        """),
        md("""
        ## 2. Tool use with extended thinking

        Claude thinks, says what it will do and asks for `get_weather`; the app runs it and
        sends a `tool_result` back. Greenflash gets the thinking and the text as
        `thought`s, a `tool_call`, its `observation` and the final answer, with usage
        (cache tokens included) on the reply.
        """),
        code("""
        def get_weather(city: str) -> str:
            return f"Sunny and 24 °C in {city}."


        tools = [{
            "name": "get_weather",
            "description": "Current weather in a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }]
        thinking = {"type": "enabled", "budget_tokens": 1024}
        with gf.conversation("claude-weather"):
            messages = [{"role": "user", "content": "Should I pack sunglasses for Rome today?"}]
            first = client.messages.create(
                model="claude-sonnet-4-6", max_tokens=2048, thinking=thinking, tools=tools, messages=messages
            )
            call = next(block for block in first.content if block.type == "tool_use")
            messages += [
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": get_weather(**call.input)},
                ]},
            ]
            final = client.messages.create(
                model="claude-sonnet-4-6", max_tokens=2048, thinking=thinking, tools=tools, messages=messages
            )
            print(first.stop_reason, "->", final.content[-1].text)
        """),
        md("""
        ## What Greenflash received
        """),
        code("""
        from gf_integrations.notebook import show

        show(collector, "claude-geo")
        """),
        code("""
        show(collector, "claude-weather")
        """),
    ]


def otel_notebook() -> list[Any]:
    return [
        md("""
        # Pydantic AI (OpenTelemetry) → Greenflash

        Pydantic AI has no callbacks: it emits OpenTelemetry spans that follow the GenAI
        semantic conventions. `instrument_otel()` adds `GreenflashSpanProcessor` to the
        tracer provider, and finished spans become Greenflash conversations: user message,
        tool calls with their arguments, observations, final answer, model, usage and the
        system prompt. The same works for any framework or instrumentation that emits GenAI
        or OpenInference spans. Offline here: the model is Pydantic AI's `FunctionModel`
        with a scripted reply, and the conversations go to a local collector.

        **Real API and model instead:** set `GREENFLASH_API_KEY`, replace the collector cell with `import gf_integrations as gf; gf.configure()`, and the `FunctionModel` with e.g. `"openai:gpt-4o-mini"`.
        """),
        code(COLLECTOR_CELL),
        md("""
        ## 1. Instrument once

        `instrument_otel()` uses the global tracer provider (and sets a plain one when
        none is set); your own exporters keep working next to it.
        `Agent.instrument_all()` turns on Pydantic AI's own spans.
        """),
        code("""
        from pydantic_ai import Agent

        from gf_integrations.otel import instrument_otel

        instrument_otel(external_user_id="dana")
        Agent.instrument_all()
        """),
        md("""
        ## 2. An agent with a tool, then a follow-up that resends the history

        The second run gets the first run's messages as `message_history`; Pydantic AI
        sends all of them to the model again, and Greenflash stores each message once.
        """),
        code("""
        from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
        from pydantic_ai.models.function import FunctionModel


        def scripted_model(messages, info):
            \"\"\"Stands in for a real model: asks for the weather once, then answers.\"\"\"
            last = messages[-1].parts[-1]
            if last.part_kind == "tool-return":
                return ModelResponse(parts=[TextPart(f"It is {last.content} in Lisbon today.")])
            if "tomorrow" in last.content:
                return ModelResponse(parts=[TextPart("Tomorrow looks sunny as well.")])
            return ModelResponse(parts=[
                TextPart("Let me check the weather."),
                ToolCallPart("get_weather", {"city": "Lisbon"}, tool_call_id="call_1"),
            ])


        agent = Agent(
            FunctionModel(scripted_model, model_name="scripted-model"),
            instructions="You are a travel assistant. Use the tools.",
        )


        @agent.tool_plain
        def get_weather(city: str) -> str:
            \"\"\"Current weather in a city.\"\"\"
            return "sunny and 24 °C"


        with gf.conversation("lisbon-trip"):
            first = await agent.run("What's the weather in Lisbon?")
            print(first.output)
            second = await agent.run("And tomorrow?", message_history=first.all_messages())
            print(second.output)
        """),
        md("""
        ## What Greenflash received
        """),
        code("""
        from gf_integrations.notebook import show

        show(collector, "lisbon-trip")
        """),
    ]


def more_providers_notebook() -> list[Any]:
    return [
        md("""
        # More providers → Greenflash

        Three more ways in, one section each: `wrap_genai` for the Google Gen AI SDK,
        `wrap_bedrock` for Amazon Bedrock through boto3, and `GreenflashLogger`, a LiteLLM
        callback. Offline here: each real SDK talks to the test suite's fake of its
        provider's API (the real wire format, streams included), served on a loopback
        port, and the conversations go to a local collector. Each section ends with the
        client to build for the real API.

        **Real Greenflash instead:** set `GREENFLASH_API_KEY` and replace the collector cell with `import gf_integrations as gf; gf.configure()`.
        """),
        code(COLLECTOR_CELL),
        md("""
        ## 1. Google Gen AI: a call, then a chat that calls a function

        `wrap_genai(client)` instruments a `genai.Client` in place (the Gemini Developer
        API or Vertex AI). `system_instruction` becomes the system prompt. Given a Python
        function as a tool, the SDK runs it itself (automatic function calling); both the
        `functionCall` and its result are recorded, as a `tool_call` and its
        `observation`. A chat resends its history on every turn; each message is stored
        once.
        """),
        code("""
        from _helpers import fake_gemini_client
        from google.genai import types

        from gf_integrations.google_genai import wrap_genai

        client = wrap_genai(fake_gemini_client(), external_user_id="alice")

        with gf.conversation("gemini-geo"):
            reply = client.models.generate_content(
                model="gemini-2.5-flash",
                contents="What is the capital of Portugal?",
                config=types.GenerateContentConfig(system_instruction="You are a concise geography tutor."),
            )
        print(reply.text)
        """),
        code("""
        def get_weather(city: str) -> str:
            \"\"\"Current weather in a city.\"\"\"
            return f"Sunny and 24 °C in {city}."


        chat = client.chats.create(
            model="gemini-2.5-flash", config=types.GenerateContentConfig(tools=[get_weather])
        )
        with gf.conversation("gemini-weather"):
            for question in ["Should I pack sunglasses for Rome today?", "And for Tokyo?"]:
                print(f"> {question}\\n{chat.send_message(question).text}")
        """),
        code("""
        from gf_integrations.notebook import show

        show(collector, "gemini-geo")
        """),
        code("""
        show(collector, "gemini-weather")
        """),
        md("""
        **Real API:** set `GEMINI_API_KEY` and build `genai.Client()` instead of
        `fake_gemini_client()` (or `genai.Client(vertexai=True, project=..., location=...)`
        for Vertex AI).
        """),
        md("""
        ## 2. Amazon Bedrock: a Converse tool loop, then a stream

        `wrap_bedrock(client)` instruments a boto3 `bedrock-runtime` client in place:
        `converse`, `converse_stream`, `invoke_model` and its streaming twin. The model
        says what it will do and asks for `get_weather`; the app sends a `toolResult` back.
        Greenflash gets the text beside the `toolUse` as a `thought`, the `tool_call`, its
        `observation` and the final answer. A `converse_stream` reply is recorded when
        the stream has been read.
        """),
        code("""
        from _helpers import fake_bedrock_client

        from gf_integrations.bedrock import wrap_bedrock

        bedrock = wrap_bedrock(fake_bedrock_client(), external_user_id="bob")
        model_id = "amazon.nova-lite-v1:0"
        tool_config = {"tools": [{"toolSpec": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        }}]}
        system = [{"text": "You are a travel assistant. Use the tools."}]

        with gf.conversation("bedrock-weather"):
            messages = [{"role": "user", "content": [{"text": "Should I pack sunglasses for Rome today?"}]}]
            first = bedrock.converse(modelId=model_id, system=system, messages=messages, toolConfig=tool_config)
            asked = first["output"]["message"]
            use = next(block["toolUse"] for block in asked["content"] if "toolUse" in block)
            messages += [
                asked,
                {"role": "user", "content": [{"toolResult": {
                    "toolUseId": use["toolUseId"],
                    "content": [{"text": get_weather(**use["input"])}],
                }}]},
            ]
            final = bedrock.converse(modelId=model_id, system=system, messages=messages, toolConfig=tool_config)
            print(first["stopReason"], "->", final["output"]["message"]["content"][0]["text"])
        """),
        code("""
        with gf.conversation("bedrock-geo"):
            response = bedrock.converse_stream(
                modelId=model_id,
                messages=[{"role": "user", "content": [{"text": "What is the capital of Japan?"}]}],
            )
            print("".join(
                event["contentBlockDelta"]["delta"].get("text", "")
                for event in response["stream"]
                if "contentBlockDelta" in event
            ))
        """),
        code("""
        show(collector, "bedrock-weather")
        """),
        code("""
        show(collector, "bedrock-geo")
        """),
        md("""
        **Real API:** with AWS credentials configured (and access to the model in your
        region), build `boto3.client("bedrock-runtime", region_name="us-east-1")` instead
        of `fake_bedrock_client()`.
        """),
        md("""
        ## 3. LiteLLM: a tool loop, then a stream

        `GreenflashLogger` is a LiteLLM callback: every `completion` / `acompletion`,
        streamed or not, whatever the provider behind it. LiteLLM's own
        `metadata.session_id` names the conversation. LiteLLM fetches its price map from
        the network when imported unless `LITELLM_LOCAL_MODEL_COST_MAP` says to use the
        copy it ships: set it first.
        """),
        code("""
        import os

        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before importing litellm

        from _helpers import fake_openai_url

        import litellm
        from gf_integrations.litellm import GreenflashLogger

        litellm.callbacks = [GreenflashLogger(external_user_id="carol")]
        api = {"api_base": fake_openai_url(), "api_key": "sk-test"}  # the fake OpenAI API
        """),
        code("""
        import json

        tools = [{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }]
        session = {"session_id": "litellm-weather"}
        messages = [{"role": "user", "content": "Should I pack sunglasses for Rome today?"}]
        first = litellm.completion(model="openai/gpt-4o-mini", messages=messages, tools=tools, metadata=session, **api)
        call = first.choices[0].message.tool_calls[0]
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": get_weather(**json.loads(call.function.arguments))},
        ]
        final = litellm.completion(model="openai/gpt-4o-mini", messages=messages, tools=tools, metadata=session, **api)
        print(final.choices[0].message.content)

        stream = litellm.completion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "What is the capital of Italy?"}],
            stream=True,
            metadata={"session_id": "litellm-geo"},
            **api,
        )
        print("".join(chunk.choices[0].delta.content or "" for chunk in stream))
        """),
        md("""
        LiteLLM runs a call's callbacks on its own logging threads, a moment after
        `completion` returns; `litellm_logged()` waits for them before we look.
        """),
        code("""
        from _helpers import litellm_logged

        litellm_logged()
        show(collector, "litellm-weather")
        """),
        code("""
        show(collector, "litellm-geo")
        """),
        md("""
        **Real API:** set `OPENAI_API_KEY` (or the key of whichever provider the model
        names, e.g. `anthropic/claude-sonnet-4-6`) and drop `**api`; LiteLLM builds the
        client itself. On the LiteLLM proxy, name a `GreenflashLogger` instance under
        `litellm_settings.callbacks` in its `config.yaml`.
        """),
    ]


NOTEBOOKS = {
    "01_langchain.ipynb": langchain_notebook,
    "02_openai.ipynb": openai_notebook,
    "03_llamaindex.ipynb": llamaindex_notebook,
    "04_anthropic.ipynb": anthropic_notebook,
    "05_otel.ipynb": otel_notebook,
    "06_more_providers.ipynb": more_providers_notebook,
}


def build(name: str) -> Any:
    """The notebook ``name`` without outputs, with stable cell ids and metadata."""
    nb = new_notebook(cells=NOTEBOOKS[name]())
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    return nb


_PORT = re.compile(r"((?:127\.0\.0\.1|localhost|\[::1\]):)\d+")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _PORT.sub(r"\1PORT", value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def normalise(nb: Any) -> Any:
    """Make an executed notebook deterministic (see the module docstring)."""
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        outputs: list[Any] = []
        for out in cell.outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                continue
            last = outputs[-1] if outputs else None
            if (
                last is not None
                and out.get("output_type") == "stream"
                and last.get("output_type") == "stream"
                and last.get("name") == out.get("name")
            ):
                # the kernel splits one cell's prints at its own timing: join them
                last["text"] += _scrub(out.get("text", ""))
                continue
            outputs.append(nbformat.from_dict(_scrub(dict(out))))
        cell.outputs = outputs
    return nb


def execute(
    nb: Any,
    *,
    timeout: int = 120,
    kernel_name: str = "python3",
    env: dict[str, str] | None = None,
) -> Any:
    """Run ``nb`` top to bottom in a real kernel, with ``notebooks/`` as working dir.

    ``env`` replaces the kernel's environment (default: this process's).
    """
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        record_timing=False,
        resources={"metadata": {"path": str(HERE)}},
    )
    client.execute(**({"env": env} if env is not None else {}))
    return nb


def sources(nb: Any) -> list[tuple[str, str]]:
    """(cell type, source) pairs: what ``--check`` compares."""
    return [(c.cell_type, c.source) for c in nb.cells]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(NOTEBOOKS))
    parser.add_argument("--no-run", action="store_true", help="write without outputs")
    parser.add_argument("--check", action="store_true", help="compare code with the files")
    args = parser.parse_args(argv)
    stale = []
    for name in args.names:
        path = HERE / name
        nb = build(name)
        if args.check:
            if not path.exists() or sources(nbformat.read(path, as_version=4)) != sources(nb):
                stale.append(name)
            continue
        if not args.no_run:
            nb = normalise(execute(nb))
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run notebooks/build.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
