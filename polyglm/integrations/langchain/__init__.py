"""polyglm as LangChain parts.

- `ChatPolyglm`: the chat pipeline as a `BaseChatModel` (multimodal content blocks, streaming, usage,
  `bind_tools` with prompt-rendered tools and `<tool_call>` parsing; `scenario=` runs a pack's assistant).
- `PackRetriever`: a pack's knowledge base as a `BaseRetriever` (Documents with citation metadata);
  `.as_tool()` makes it an agent tool.
- `pack_tools(pack)`: the pack's tools as LangChain tools, run in polyglm's killable tool worker.

Importing this needs `langchain-core`; no model loads until a part is first called.
"""

from polyglm.integrations.langchain.chat_model import ChatPolyglm
from polyglm.integrations.langchain.retriever import PackRetriever
from polyglm.integrations.langchain.tools import PackTool, as_langchain_tool, pack_tool, pack_tools

__all__ = ["ChatPolyglm", "PackRetriever", "PackTool", "as_langchain_tool", "pack_tool", "pack_tools"]
