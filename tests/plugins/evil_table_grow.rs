//! Fixture `fixture-evil-table-grow`: a plugin that grows its table. No SDK and no language the tests
//! build emits `table.grow`, so this component is written instruction by instruction (with
//! `wasm-encoder`) and wrapped for `weir:stage@0.2` (with `wit-component`) by the build
//! script of `tests/plugins`.
//!
//! `process` grows the instance's function table by as many elements as its first event's
//! value has bytes. If the host refuses the growth (`table.grow` gives -1) it traps with
//! `unreachable`; otherwise it passes the batch through unchanged. `describe` names no
//! settings and `init` accepts any.

use std::path::Path;

use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function, FunctionSection,
    GlobalSection, GlobalType, HeapType, MemArg, MemorySection, MemoryType, Module, RefType,
    TableSection, TableType, TypeSection, ValType,
};

/// Where the static answers live in the guest's memory.
const DESCRIPTION: i32 = 1024;
const INIT_OK: i32 = 1100;
const OUTPUT: i32 = 1200;
const STRINGS: i32 = 2048;
/// The first address `cabi_realloc` hands out.
const HEAP: i32 = 65536;

const NAME: &str = "fixture-evil-table-grow";
const VERSION: &str = "0.1.0";

fn mem(offset: u64) -> MemArg {
    MemArg {
        offset,
        align: 2,
        memory_index: 0,
    }
}

/// The core module.
fn module() -> Vec<u8> {
    use ValType::I32;
    let mut types = TypeSection::new();
    types.ty().function([], [I32]); // describe
    types.ty().function([I32, I32], [I32]); // init
    types.ty().function([I32; 8], [I32]); // process
    types.ty().function([I32; 4], [I32]); // cabi_realloc
    let mut functions = FunctionSection::new();
    for ty in 0..4 {
        functions.function(ty);
    }
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum: 1,
        maximum: None,
        shared: false,
    });
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 2,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(HEAP),
    );
    let mut exports = ExportSection::new();
    exports.export("describe", ExportKind::Func, 0);
    exports.export("init", ExportKind::Func, 1);
    exports.export("process", ExportKind::Func, 2);
    exports.export("cabi_realloc", ExportKind::Func, 3);
    exports.export("memory", ExportKind::Memory, 0);

    let mut code = CodeSection::new();
    // describe: the description record, already in memory.
    let mut describe = Function::new([]);
    describe.instructions().i32_const(DESCRIPTION).end();
    code.function(&describe);
    // init: `ok`, a zero discriminant.
    let mut init = Function::new([]);
    init.instructions().i32_const(INIT_OK).end();
    code.function(&init);
    // process(data, data_len, events, events_len, headers, headers_len, ts, ts_len)
    let mut process = Function::new([]);
    let mut p = process.instructions();
    p.ref_null(HeapType::FUNC)
        .local_get(2)
        .i32_load(mem(4)) // the first event's value length
        .table_grow(0)
        .i32_const(-1)
        .i32_eq()
        .if_(wasm_encoder::BlockType::Empty)
        .unreachable()
        .end();
    // The output: the input batch as it came, no counts, no failures.
    for param in 0..8u32 {
        p.i32_const(OUTPUT)
            .local_get(param)
            .i32_store(mem(u64::from(param) * 4));
    }
    for (offset, value) in [(32, 8), (36, 0), (40, 8), (44, 0)] {
        p.i32_const(OUTPUT).i32_const(value).i32_store(mem(offset));
    }
    p.i32_const(OUTPUT).end();
    code.function(&process);
    // cabi_realloc(old, old_size, align, new_size): a bump allocator that grows memory.
    let mut realloc = Function::new([(2, I32)]);
    let mut r = realloc.instructions();
    // ptr = (heap + align - 1) & !(align - 1)
    r.global_get(0)
        .local_get(2)
        .i32_add()
        .i32_const(1)
        .i32_sub()
        .local_get(2)
        .i32_const(1)
        .i32_sub()
        .i32_const(-1)
        .i32_xor()
        .i32_and()
        .local_tee(4)
        .local_get(3)
        .i32_add()
        .global_set(0);
    // pages = (heap + 65535) >> 16; grow by what is missing.
    r.global_get(0)
        .i32_const(65535)
        .i32_add()
        .i32_const(16)
        .i32_shr_u()
        .local_tee(5)
        .memory_size(0)
        .i32_gt_u()
        .if_(wasm_encoder::BlockType::Empty)
        .local_get(5)
        .memory_size(0)
        .i32_sub()
        .memory_grow(0)
        .drop()
        .end();
    // A reallocation keeps the old bytes.
    r.local_get(0)
        .if_(wasm_encoder::BlockType::Empty)
        .local_get(4)
        .local_get(0)
        .local_get(1)
        .memory_copy(0, 0)
        .end()
        .local_get(4)
        .end();
    code.function(&realloc);

    // The description record: name, version, an empty list of settings.
    let name = STRINGS;
    let version = STRINGS + NAME.len() as i32;
    let mut record = Vec::new();
    for word in [name, NAME.len() as i32, version, VERSION.len() as i32, 8, 0] {
        record.extend_from_slice(&word.to_le_bytes());
    }
    let mut data = DataSection::new();
    data.active(0, &ConstExpr::i32_const(DESCRIPTION), record);
    data.active(
        0,
        &ConstExpr::i32_const(STRINGS),
        [NAME, VERSION].concat().into_bytes(),
    );

    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&tables)
        .section(&memories)
        .section(&globals)
        .section(&exports)
        .section(&code)
        .section(&data);
    module.finish()
}

/// The component, for the `stage` world of the WIT package in `wit_dir`.
pub fn component(wit_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(wit_dir)?;
    let world = resolve.select_world(&[package], Some("stage"))?;
    let mut bytes = module();
    wit_component::embed_component_metadata(
        &mut bytes,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    wit_component::ComponentEncoder::default()
        .module(&bytes)?
        .validate(true)
        .encode()
}
