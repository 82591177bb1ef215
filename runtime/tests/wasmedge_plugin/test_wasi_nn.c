/* A WasmEdge plugin named "wasi_nn" for the tests: its wasi_ephemeral_nn module has one
 * function, load() -> (), which appends a line to $TRIAGE_TEST_PLUGIN_MARKER. It stands in
 * for WasmEdge's real wasi_nn plugin, which Debian 13 does not ship. */
#include <stdio.h>
#include <stdlib.h>
#include <wasmedge/wasmedge.h>

static WasmEdge_Result load(void *data, const WasmEdge_CallingFrameContext *frame,
                            const WasmEdge_Value *params, WasmEdge_Value *returns) {
  (void)data, (void)frame, (void)params, (void)returns;
  const char *path = getenv("TRIAGE_TEST_PLUGIN_MARKER");
  FILE *marker = path ? fopen(path, "a") : NULL;
  if (!marker) return WasmEdge_Result_Fail;
  fputs("wasi_ephemeral_nn.load called\n", marker);
  fclose(marker);
  return WasmEdge_Result_Success;
}

static WasmEdge_ModuleInstanceContext *create(const struct WasmEdge_ModuleDescriptor *desc) {
  (void)desc;
  WasmEdge_String name = WasmEdge_StringCreateByCString("wasi_ephemeral_nn");
  WasmEdge_ModuleInstanceContext *module = WasmEdge_ModuleInstanceCreate(name);
  WasmEdge_StringDelete(name);
  WasmEdge_FunctionTypeContext *type = WasmEdge_FunctionTypeCreate(NULL, 0, NULL, 0);
  WasmEdge_FunctionInstanceContext *function = WasmEdge_FunctionInstanceCreate(type, load, NULL, 0);
  WasmEdge_FunctionTypeDelete(type);
  WasmEdge_String function_name = WasmEdge_StringCreateByCString("load");
  WasmEdge_ModuleInstanceAddFunction(module, function_name, function);
  WasmEdge_StringDelete(function_name);
  return module;
}

static WasmEdge_ModuleDescriptor modules[] = {
    {.Name = "wasi_ephemeral_nn", .Description = "Triage's test wasi-nn module", .Create = create},
};

static WasmEdge_PluginDescriptor plugin = {
    .Name = "wasi_nn",
    .Description = "Triage's test stand-in for WasmEdge's wasi_nn plugin",
    .APIVersion = WasmEdge_Plugin_CurrentAPIVersion,
    .Version = {.Major = 0, .Minor = 1, .Patch = 0, .Build = 0},
    .ModuleCount = 1,
    .ProgramOptionCount = 0,
    .ModuleDescriptions = modules,
    .ProgramOptions = NULL,
};

WASMEDGE_CAPI_PLUGIN_EXPORT const WasmEdge_PluginDescriptor *WasmEdge_Plugin_GetDescriptor(void) {
  return &plugin;
}
