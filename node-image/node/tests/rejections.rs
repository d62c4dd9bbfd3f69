//! Bad input is rejected with a reason and breaks nothing; a tampered store refuses to start.

mod common;

use common::*;
use medledger::store::Store;
use medledger_api::keys::SigningKey;
use medledger_api::pb::{
    GetBlockRequest, Put, RegisterParticipant, ResultCode, Transaction, tx_body::Op,
};
use prost::Message;
use std::time::Duration;

fn code(c: ResultCode) -> i32 {
    c as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_transactions_are_rejected_with_a_reason() {
    let c = consortium(3, default_opts()).await;
    let keys = register_clients(&c, 1).await;
    let key = &keys[0];
    let leader = c.wait_leader(WAIT).await.unwrap();
    let url = c.nodes[(leader + 1) % 3].api_url(); // through a follower: forwarding too
    let chain = c.genesis.chain_id.clone();

    let r = try_submit(&url, b"\x00\xffnot a transaction".to_vec())
        .await
        .unwrap();
    assert_eq!(
        (r.code, r.height),
        (code(ResultCode::Malformed), 0),
        "{}",
        r.reason
    );
    assert!(!r.reason.is_empty());

    let big = Op::Put(Put {
        key: "big".into(),
        value: vec![0u8; 70 * 1024],
    });
    let r = try_submit(&url, medledger_api::tx::build(key, &chain, 1, big))
        .await
        .unwrap();
    assert_eq!(r.code, code(ResultCode::Oversized), "{}", r.reason);
    assert!(r.reason.contains("maxTxBytes"));

    let r = try_submit(&url, put_tx_on(key, "another-chain", 1))
        .await
        .unwrap();
    assert_eq!(r.code, code(ResultCode::WrongChain), "{}", r.reason);

    let stranger = SigningKey::generate(c.genesis.suite);
    let r = try_submit(&url, put_tx(&c, &stranger, 1, "x"))
        .await
        .unwrap();
    assert_eq!(r.code, code(ResultCode::UnknownSigner), "{}", r.reason);

    // A forged signature passes the cheap ingress checks and is rejected by every node
    // when the block is applied: it stays in the block with its code.
    let mut forged = Transaction::decode(put_tx(&c, key, 1, "x").as_slice()).unwrap();
    forged.signature[5] ^= 0xff;
    let r = try_submit(&url, forged.encode_to_vec()).await.unwrap();
    assert_eq!(r.code, code(ResultCode::BadSignature), "{}", r.reason);
    assert!(r.height > 0, "bad signatures are recorded in a block");
    c.wait_height(r.height, WAIT).await.unwrap();
    let block = c
        .client(0)
        .await
        .unwrap()
        .get_block(GetBlockRequest { height: r.height })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        block.block.unwrap().results[r.index as usize].code,
        code(ResultCode::BadSignature)
    );

    let good = put_tx(&c, key, 1, "x");
    let ok = try_submit(&url, good.clone()).await.unwrap();
    assert_eq!(ok.code, 0, "{}", ok.reason);
    // Resubmitting the very same transaction is idempotent: same place on chain.
    let again = try_submit(&url, good).await.unwrap();
    assert_eq!(
        (again.code, again.height, again.index),
        (0, ok.height, ok.index)
    );
    // Another transaction with a used nonce is a replay.
    let r = try_submit(&url, put_tx(&c, key, 1, "other")).await.unwrap();
    assert_eq!(r.code, code(ResultCode::ReplayedNonce), "{}", r.reason);

    // A participant may not register others: only member administrators may.
    let op = Op::RegisterParticipant(RegisterParticipant {
        public_key: stranger.public(),
        role: "client".into(),
        department: String::new(),
    });
    let r = try_submit(&url, medledger_api::tx::build(key, &chain, 2, op))
        .await
        .unwrap();
    assert_eq!(r.code, code(ResultCode::Unauthorized), "{}", r.reason);

    // Nothing crashed: the chain still commits and all nodes agree.
    let r = try_submit(&url, put_tx(&c, key, 3, "x")).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.reason);
    assert_converged(&c, &[ok.tx_id, r.tx_id]).await;
}

fn put_tx_on(key: &SigningKey, chain: &str, nonce: u64) -> Vec<u8> {
    medledger_api::tx::build(
        key,
        chain,
        nonce,
        Op::Put(Put {
            key: "k".into(),
            value: b"v".to_vec(),
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_block_makes_the_node_refuse_to_start() {
    let mut c = consortium(3, default_opts()).await;
    let keys = register_clients(&c, 1).await;
    let leader = c.wait_leader(WAIT).await.unwrap();
    for nonce in 1..=5 {
        let r = try_submit(&c.nodes[leader].api_url(), put_tx(&c, &keys[0], nonce, "t"))
            .await
            .unwrap();
        assert_eq!(r.code, 0);
    }
    let h = c.status(leader).await.unwrap().height;
    c.wait_height(h, WAIT).await.unwrap();
    let victim = (leader + 1) % 3;
    // A graceful stop flushes the store, so block 3 is on disk to be tampered with.
    c.stop(victim).unwrap();
    {
        let store =
            Store::open(&c.nodes[victim].data_dir, c.genesis.hash(), c.genesis.suite).unwrap();
        let mut block = store
            .read()
            .unwrap()
            .block(3)
            .unwrap()
            .expect("block 3 stored");
        // Alter one byte of a recorded transaction's payload.
        let last = block.txs[0].len() - 1;
        block.txs[0][last] ^= 0x01;
        store.raw_put_block(3, &block.encode_to_vec()).unwrap();
    }
    c.start(victim).unwrap();
    let exit = c
        .wait_exit(victim, Duration::from_secs(60))
        .unwrap()
        .expect("the node must exit by itself");
    assert!(!exit.success());
    let log = c.log(victim);
    assert!(
        log.contains("height 3"),
        "the error must name the height: {log}"
    );
}
