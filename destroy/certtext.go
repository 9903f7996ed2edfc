package destroy

import (
	"fmt"
	"strings"
	"time"

	"github.com/sealgate/sealgate/audit"
	"github.com/sealgate/sealgate/storage"
)

// What a destruction certificate says in words. Every sentence is built
// from what the destruction recorded (the proven events): a step that was
// not done as designed changes the sentence, and what stays true only if
// people act is said as a condition, not claimed.

// certFacts are what the texts depend on beyond the certificate's own
// fields.
type certFacts struct {
	epoch       int  // the master key epoch still in use (no rotation)
	overwritten bool // the rotation overwrote the old key file before unlinking it
}

// writeTexts fills the method steps, the statements and the conditions.
func writeTexts(c *audit.Certificate, f certFacts) {
	c.Method.Steps = methodSteps(c, f)
	c.Statements = statements()
	c.Conditions = conditions(c, f)
}

// more appends a sentence in each language.
func more(b *audit.Bilingual, ja, en string) {
	b.JA += ja
	b.EN += en
}

func utc(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func methodSteps(c *audit.Certificate, f certFacts) []audit.Bilingual {
	walOK := true
	for _, x := range c.Exceptions {
		walOK = walOK && x.Step != "wal"
	}
	erase := audit.Bilingual{
		JA: "鍵の暗号学的消去（クリプトシュレッディング）: 各受信者の転送鍵（X25519 秘密鍵を収めた key.age）と契約鍵（KEK）をデータベースから消去しました。データベースは SQLite の secure_delete により解放領域を上書きします。",
		EN: "Crypto-erasure: every recipient's transfer identity (the X25519 secret key in key.age) and the contract key (KEK) were erased from the database, which overwrites freed space (SQLite secure_delete).",
	}
	if walOK {
		more(&erase, "消去後に先行書き込みログ（WAL）をチェックポイントして切り詰めました。",
			" Its write-ahead log was checkpointed and truncated after the erasure.")
	} else {
		more(&erase, "先行書き込みログ（WAL）は切り詰められませんでした（例外を参照）。",
			" Its write-ahead log could not be truncated (see the exceptions).")
	}
	more(&erase, "以後、ゲートウェイが保持するものでは、この契約の暗号文（オブジェクトの旧バージョン・複製を含む）を復号できません。",
		" From then on nothing the gateway holds can decrypt any ciphertext of this contract, object versions and replicas included.")

	steps := []audit.Bilingual{
		{JA: "契約の終了: 以後この契約のメールは拒否し、未送信のリンク通知・鍵通知・コピーを取り消してその秘密情報を消去しました。",
			EN: "Contract ended: mail for it is refused from then on; pending link notices, key notices and copies were cancelled and their secrets erased."},
		erase,
		deletionStep(c),
		{JA: "削除の確認: 各オブジェクトを照会し、存在しないことを確認しました。",
			EN: "Verification: each object was looked up (Stat) and found absent."},
	}
	if mk := c.MasterKey; mk != nil {
		st := audit.Bilingual{
			JA: fmt.Sprintf("マスター鍵の更新: マスター鍵を第 %d 世代から第 %d 世代に更新し、有効な秘密情報（他の契約の契約鍵、台帳署名鍵、TOTP 秘密、送信待ちデータ）をすべて新しい鍵で包み直したうえで、旧鍵のファイルを削除しました。", mk.RetiredEpoch, mk.Epoch),
			EN: fmt.Sprintf("Master key rotation: the master key was replaced (epoch %d → %d); every live secret (other contracts' keys, the ledger signing key, TOTP secrets, queued data) was re-wrapped to the new key before the old key file was removed.", mk.RetiredEpoch, mk.Epoch),
		}
		if f.overwritten {
			more(&st, "旧鍵のファイルは削除前にゼロで上書きしました（コピーオンライト方式のファイルシステムやフラッシュ記憶装置では、上書きが元の領域に及ばない場合があります）。",
				" The old key file was overwritten with zeros before removal (on copy-on-write file systems and flash storage the overwrite may not reach the old blocks).")
		}
		steps = append(steps, st)
	}
	return append(steps, audit.Bilingual{
		JA: "記録: 上記の各手順を改ざん検知可能な台帳に記録し、署名済みチェックポイントと各記録の包含証明をこの証明書に収めました。",
		EN: "Record: every step above is an entry of the tamper-evident ledger; this certificate carries a signed checkpoint and each entry's inclusion proof."})
}

// deletionStep says what the deletions reached, as each object.deleted
// recorded it.
func deletionStep(c *audit.Certificate) audit.Bilingual {
	seen := map[string]bool{}
	for _, t := range c.Transfers {
		for _, f := range t.Files {
			seen[f.Versions] = true
		}
	}
	switch {
	case len(seen) == 0 || (len(seen) == 1 && seen[storage.VersionsAll]):
		return audit.Bilingual{JA: "保管ファイルの削除: 暗号化して保管していた各オブジェクトを、すべてのバージョンを含めて削除しました。",
			EN: "Object deletion: every stored (encrypted) object was deleted, every version."}
	case len(seen) == 1 && seen[storage.VersionsNone]:
		return audit.Bilingual{JA: "保管ファイルの削除: 暗号化して保管していた各オブジェクトを削除しました（ファイルシステムはバージョンを保持しません）。",
			EN: "Object deletion: every stored (encrypted) object was deleted (the file system keeps no versions)."}
	}
	return audit.Bilingual{JA: "保管ファイルの削除: 暗号化して保管していた各オブジェクトを削除しました。オブジェクトごとに、削除が及んだ範囲（全バージョン／現行バージョンのみ／不明）を記載しています。現行バージョンのみのものは、保管先がバージョン一覧に対応していなかったため、旧バージョンが残っている可能性があります（復号はできません）。",
		EN: "Object deletion: every stored (encrypted) object was deleted; each object states what the deletion reached (every version, the current version only, or unknown). Where only the current version was deleted, the store could not list versions, and older versions, if the bucket keeps any, may remain (they cannot be decrypted)."}
}

func statements() []audit.Bilingual {
	return []audit.Bilingual{
		{JA: "この削除は、当社のゲートウェイが保管していたデータを対象とします。削除より前に受信者がダウンロードした複製（「ダウンロード済み」と記載）は受信者の管理下にあり、この削除の対象外です。該当する受信者には別途、削除を依頼してください。",
			EN: "This destruction covers what the gateway held. Copies that recipients downloaded before it (marked \"downloaded\") are in their hands and are not covered; ask those recipients to destroy them."},
		{JA: "「未ダウンロード」は、台帳にダウンロードの記録がないことを示します。",
			EN: "\"Not downloaded\" means the ledger records no download."},
		{JA: "「ダウンロード済み（一部、N バイト）」は、ダウンロードがいずれも途中で終わったものの、受信者が内容の一部を得たことを示します。N は、ゲートウェイが送信したデータから受信者が得られる平文の最大バイト数です（暗号化ファイル file.age では、送信した完全なチャンクを復号して得られるバイト数）。実際に受信者に届いた量はこれより少ない場合があります。",
			EN: "\"Downloaded (partial, N bytes)\" means every download stopped part-way, but the recipient got part of the content: N is the most plaintext the recipient can have from what the gateway sent (for the encrypted file.age, what its complete chunks decrypt to). The recipient may have received less."},
		{JA: "社内宛てのコピーは無変更で社内のメールシステムに配信されており、この削除の対象外です。",
			EN: "Copies delivered unchanged to internal recipients are in the internal mail system and are not covered."},
	}
}

// conditions are what the certificate's claim that nothing can be opened
// depends on beyond the gateway.
func conditions(c *audit.Certificate, f certFacts) []audit.Bilingual {
	var out []audit.Bilingual
	if mk := c.MasterKey; mk != nil {
		out = append(out, audit.Bilingual{
			JA: fmt.Sprintf("暗号文を誰も復号できないことは、次の条件のもとで成り立ちます: ゲートウェイの外にある第 %d 世代以前のマスター鍵の複製（鍵ファイルのバックアップ、保管用の控え、配備ツールの設定など）と、%s より前に作成したゲートウェイのデータベースおよびデータディレクトリのバックアップを、すべて破棄すること。これらが残っている間は、両方を持つ者がこの契約のファイルを復号できます。", mk.RetiredEpoch, utc(mk.RotatedAt)),
			EN: fmt.Sprintf("That no one can decrypt the ciphertext holds on these conditions: every copy of the master keys of epochs ≤ %d kept outside the gateway (backups of the key file, escrow copies, deployment tooling) and every backup of the gateway's database and data directory made before %s are destroyed. While both survive, whoever holds them can decrypt this contract's files.", mk.RetiredEpoch, utc(mk.RotatedAt)),
		})
	} else {
		out = append(out, audit.Bilingual{
			JA: fmt.Sprintf("マスター鍵は更新していません（第 %d 世代を使用中。例外を参照）。%s より前に作成したゲートウェイのデータベースおよびデータディレクトリのバックアップは、このマスター鍵でこの契約のファイルを復号できるため、すべて破棄する必要があります。", f.epoch, utc(c.CompletedAt)),
			EN: fmt.Sprintf("The master key was not rotated (epoch %d is still in use; see the exceptions). Every backup of the gateway's database and data directory made before %s opens this contract's files with it, and must be destroyed.", f.epoch, utc(c.CompletedAt)),
		})
	}
	var holders []string
	for _, t := range c.Transfers {
		for _, r := range t.Recipients {
			if r.KeyFileEvent != nil {
				holders = append(holders, fmt.Sprintf("%s (%s, #%d)", r.Address, t.ID, *r.KeyFileEvent))
			}
		}
	}
	if len(holders) > 0 {
		out = append(out, audit.Bilingual{
			JA: "次の受信者は鍵ファイル key.age をダウンロードしており、転送鍵を保持しています。ゲートウェイの外に残る file.age の複製を復号できるため、削除を依頼してください: " + strings.Join(holders, ", "),
			EN: "These recipients downloaded their key file (key.age) and so hold their transfer identity: they can decrypt any copy of file.age kept outside the gateway. Ask them to destroy it: " + strings.Join(holders, ", "),
		})
	}
	return out
}

// exceptionText explains a destruction step that was not done as
// designed.
func exceptionText(step, result string, rotated bool) audit.Bilingual {
	switch step {
	case "wal":
		b := audit.Bilingual{
			JA: "データベースの先行書き込みログ（WAL）を切り詰められませんでした（読み取り中の接続があったため）。消去した鍵の以前のページ像は、後続の書き込みで上書きされるまで WAL に残ります。",
			EN: "The database's write-ahead log could not be truncated (readers kept it busy). The page images of the erased keys stay in it until later writes overwrite them.",
		}
		if rotated {
			more(&b, "それらは更新前のマスター鍵で包まれており、その鍵は消去しました。",
				" They are wrapped to the master key of before the rotation, which was erased.")
		}
		return b
	case "master-key":
		ja, _ := rotateOffJA(result)
		return audit.Bilingual{
			JA: "マスター鍵を更新しませんでした（" + ja + "）。",
			EN: "The master key was not rotated (" + result + ").",
		}
	}
	return audit.Bilingual{JA: step + ": " + result, EN: step + ": " + result}
}
